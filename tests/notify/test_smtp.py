"""SmtpNotifier against a real SMTP server (aiosmtpd on a free local port)."""

from __future__ import annotations

import socket
from datetime import date

import pytest

from gateway.errors import SinkError
from gateway.notify.rules import Notice
from gateway.notify.smtp import SmtpNotifier
from tests.notify.smtp_server import smtp_server

NOTICE = Notice(subscription_id=3, meter_id="m-42", channel="1.0.1.8.0.255",
                kind="daily_above", address="customer@example.org", key="2026-03-08",
                day=date(2026, 3, 8), value_wh=12_001, threshold_wh=12_000)


def notifier(port: int) -> SmtpNotifier:
    return SmtpNotifier("127.0.0.1", port, "gateway@example.org", starttls=False,
                        timeout_s=3)


async def test_the_message_arrives_with_the_facts() -> None:
    async with smtp_server() as inbox:
        await notifier(inbox.port).send(NOTICE)
    assert inbox.envelopes == [("gateway@example.org", ["customer@example.org"])]
    [msg] = inbox.messages
    assert msg["To"] == "customer@example.org" and msg["From"] == "gateway@example.org"
    assert "m-42" in msg["Subject"] and "2026-03-08" in msg["Subject"]
    assert msg.get_content_type() == "text/plain"
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert "Day: 2026-03-08" in text
    assert "Usage: 12.001 kWh" in text and "Threshold: 12.000 kWh" in text


@pytest.mark.parametrize(("reply", "retryable"), [("451 4.3.0 try later", True),
                                                  ("554 5.7.1 rejected", False)])
async def test_a_refusal_is_a_sink_error(reply: str, retryable: bool) -> None:
    async with smtp_server() as inbox:
        inbox.refuse = reply
        with pytest.raises(SinkError) as caught:
            await notifier(inbox.port).send(NOTICE)
    assert caught.value.retryable is retryable
    assert reply.split()[0] in str(caught.value)
    assert inbox.messages == []


async def test_no_server_is_a_retryable_sink_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SinkError) as caught:
        await notifier(port).send(NOTICE)
    assert caught.value.retryable


async def test_starttls_asked_of_a_server_without_it_is_not_retryable() -> None:
    async with smtp_server() as inbox:
        plain_only = SmtpNotifier("127.0.0.1", inbox.port, "g@example.org", starttls=True,
                                  timeout_s=3)
        with pytest.raises(SinkError) as caught:
            await plain_only.send(NOTICE)
    assert not caught.value.retryable and inbox.messages == []
