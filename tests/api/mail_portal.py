"""The customer portal of ``test_customers_api`` with mail: a real SMTP server (aiosmtpd)
behind the [notify] notifier, for the confirmation, unsubscribe and reset tests."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import Message

import httpx

from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.notify.letters import MailOut
from gateway.notify.smtp import SmtpNotifier
from gateway.store.sqlite import SqliteStore
from tests.notify.smtp_server import Inbox, smtp_server

from .test_customers_api import (
    ACCOUNTS,
    NOW,
    OPERATOR,
    PASSWORD,
    TOKEN,
    Portal,
    _seed_other_meter,
)

PUBLIC = "http://portal"


@dataclass
class MailPortal(Portal):
    inbox: Inbox
    notifier: SmtpNotifier

    async def sign_in(self, email: str) -> dict[str, str]:
        r = await self.client.post("/api/v1/sessions", json={"email": email,
                                                              "password": PASSWORD})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def mails_to(self, address: str) -> list[Message]:
        return [m for m in self.inbox.messages if m["To"] == address]


def token_in(msg: Message, path: str) -> str:
    """The token of the link to ``path`` in a mail's body."""
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    found = re.search(re.escape(path) + r"\?token=([A-Za-z0-9_%-]+)", body.decode())
    assert found, body
    return found.group(1)


@asynccontextmanager
async def mail_portal(store: SqliteStore, *, mail: bool = True) -> AsyncIterator[MailPortal]:
    await _seed_other_meter(store)
    clock = ManualClock(NOW)
    async with smtp_server() as inbox:
        notifier = SmtpNotifier("127.0.0.1", inbox.port, "gw@example.org", starttls=False,
                                timeout_s=3)
        app = create_app(store, operator_token=TOKEN, clock=clock, accounts=store,
                         mail=MailOut(notifier, PUBLIC) if mail else None)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=PUBLIC) as c:
            r = await c.post("/api/v1/accounts", headers=OPERATOR, json={"accounts": ACCOUNTS})
            assert r.status_code == 200, r.text
            yield MailPortal(app, c, clock, inbox, notifier)
