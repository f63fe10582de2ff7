"""The mails the portal sends on a customer's request, and the links in every mail.

- The *confirmation* mail goes to an address a customer wants notices at, before any
  notice does (double opt-in): a single-use link confirms it.
- The *password reset* mail carries a single-use token.
- Every notice carries an unsubscribe link (``gateway.notify.smtp.message`` adds the
  RFC 8058 ``List-Unsubscribe`` headers).

Links are absolute when ``[notify] public_url`` is set (the portal's address as
customers reach it); without it a mail names the path and the token. Tokens never go
to the log: a failed send is logged with the address's domain only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.parse import quote

from gateway import log
from gateway.errors import SinkError

__all__ = ["CONFIRM_PATH", "POLICY", "RESET_PATH", "UNSUBSCRIBE_PATH", "MailOut", "Mailer",
           "confirm_letter", "link", "reset_letter", "send_quietly"]

_log = log.get("gateway.notify")

CONFIRM_PATH = "/api/v1/notifications/confirm"
UNSUBSCRIBE_PATH = "/api/v1/notifications/unsubscribe"
RESET_PATH = "/api/v1/password-resets/confirm"
#: Where the page takes a reset token (``/#reset=<token>``).
PAGE_RESET = "/#reset="
#: Lines up to RFC 5322's 998 characters: a link with its token stays one line, and the
#: List-Unsubscribe header one plain URI (folded at 78 it would be RFC 2047-encoded,
#: which mail clients do not take for a link).
POLICY = policy.default.clone(max_line_length=998)


class Mailer(Protocol):
    """Delivers one e-mail (``SmtpNotifier`` is one)."""

    sender: str

    async def deliver(self, msg: EmailMessage) -> None:
        """Return once the server accepted ``msg``, else raise ``SinkError``."""


@dataclass(frozen=True)
class MailOut:
    """How the API sends mail: the mailer and the portal's public address (or None)."""

    mailer: Mailer
    public_url: str | None = None


def link(public_url: str | None, path: str, token: str) -> str:
    return f"{(public_url or '').rstrip('/')}{path}?token={quote(token)}"


def _letter(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="ami-gateway")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


def _how(public_url: str | None, url: str, verb: str) -> str:
    if public_url:
        return f"{verb}, open this link and press the button:\n\n  {url}\n"
    return f"{verb}, send an HTTP POST to the portal at:\n\n  {url}\n"


def confirm_letter(out: MailOut, address: str, token: str, expires_at: datetime) -> EmailMessage:
    url = link(out.public_url, CONFIRM_PATH, token)
    body = ("Someone asked for meter usage notifications to be sent to this address.\n\n"
            + _how(out.public_url, url, "To receive them")
            + f"\nThe link works once, until {expires_at:%Y-%m-%d %H:%M} UTC.\n"
            "If you did not ask for this, ignore this mail: nothing more will be sent.\n")
    return _letter(out.mailer.sender, address, "Confirm your address for usage notifications",
                   body)


def reset_letter(out: MailOut, address: str, token: str, expires_at: datetime) -> EmailMessage:
    # The page's link carries the token after "#": a fragment never leaves the browser,
    # so no proxy or server log ever holds it.
    page = ("To choose a new password, open this link:\n\n"
            f"  {out.public_url.rstrip('/')}{PAGE_RESET}{quote(token)}\n\n"
            if out.public_url else "")
    body = ("Someone asked to reset the password of the portal login of this address.\n\n"
            + page
            + f"Your reset token: {token}\n\n"
            f"(or send it with your new password to {(out.public_url or '').rstrip('/')}"
            f"{RESET_PATH}\n"
            ' as POST {"token": "...", "password": "..."}) before '
            f"{expires_at:%Y-%m-%d %H:%M} UTC. It works once, and signs out every session.\n"
            "If you did not ask for this, ignore this mail: your password stays as it is.\n")
    return _letter(out.mailer.sender, address, "Reset your portal password", body)


async def send_quietly(mailer: Mailer, msg: EmailMessage, what: str) -> None:
    """Deliver after the reply went out (a background task): a failure is logged, never
    with the token or the whole address."""
    try:
        await mailer.deliver(msg)
    except SinkError as exc:
        domain = str(msg["To"]).rpartition("@")[2]
        _log.warning("mail not sent", what=what, domain=domain, retryable=exc.retryable)
