"""Delivery of notices: the ``Notifier`` interface and its SMTP implementation.

``SmtpNotifier`` uses the standard library's ``smtplib`` (blocking) in a worker thread,
one connection per notice: notices are rare, and a fresh connection never finds a
stale one. Every failure becomes ``SinkError``: retryable for a connection problem or a
4xx reply, not for a 5xx refusal (the address or the message will not do); the task
keeps the notice due either way, so it goes out on a later run once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from gateway.errors import SinkError
from gateway.notify.letters import POLICY
from gateway.notify.rules import Notice, describe

__all__ = ["Notifier", "SmtpNotifier", "message"]


class Notifier(Protocol):
    async def send(self, notice: Notice) -> None:
        """Deliver ``notice``; return only once it was accepted, else raise ``SinkError``."""


def message(notice: Notice, sender: str) -> EmailMessage:
    """The notice as a plain-text e-mail."""
    subject, body = describe(notice)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = notice.address
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="ami-gateway")
    if notice.unsubscribe_url is not None:
        body += f"To stop these notices (no sign-in needed): {notice.unsubscribe_url}\n"
        if notice.unsubscribe_url.startswith(("https://", "http://")):
            # RFC 8058 one-click: the mail client POSTs "List-Unsubscribe=One-Click" there.
            msg["List-Unsubscribe"] = f"<{notice.unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(body)
    return msg


class SmtpNotifier:
    """Notices as e-mail through one SMTP server (STARTTLS and login when configured)."""

    def __init__(self, host: str, port: int, sender: str, *, starttls: bool = True,
                 username: str | None = None, password: str | None = None,
                 timeout_s: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    async def send(self, notice: Notice) -> None:
        await self.deliver(message(notice, self.sender))

    async def deliver(self, msg: EmailMessage) -> None:
        """Any e-mail (``gateway.notify.letters.Mailer``)."""
        await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise SinkError(f"{where} refused the recipient {msg['To']}: {exc.recipients}",
                            retryable=all(400 <= c < 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            raise SinkError(f"{where} answered {exc.smtp_code} {text}",
                            retryable=400 <= exc.smtp_code < 500) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise SinkError(f"{where}: {exc} (set starttls = false only for a local relay)",
                            retryable=False) from exc
        except (smtplib.SMTPException, OSError) as exc:  # connection refused, timeout, TLS
            raise SinkError(f"{where}: {exc!r}", retryable=True) from exc
