"""Password reset by mail on a real SqliteStore and a real SMTP server: the same answer
for a login and for no login, a single-use token that expires, every session ended,
the per-address cap, and 503 without mail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from gateway.notify.letters import RESET_PATH
from gateway.store.sqlite import SqliteStore

from .mail_portal import MailPortal, mail_portal
from .test_customers_api import NOW, PASSWORD

NEW = "a much better passphrase"
SENT = {"detail": "if a login has this address, a reset token was mailed to it"}


@pytest.fixture
async def portal(store: SqliteStore) -> AsyncIterator[MailPortal]:
    async with mail_portal(store) as p:
        yield p


def reset_token(portal: MailPortal, address: str) -> str:
    [msg] = portal.mails_to(address)
    assert msg["Subject"] == "Reset your portal password"
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes) and f"{RESET_PATH}" in body.decode()
    return body.decode().split("Your reset token: ")[1].split()[0]


async def test_a_reset_sets_the_password_once_and_ends_every_session(
        portal: MailPortal) -> None:
    c = portal.client
    auth = await portal.login("a@example.org")
    known = await c.post("/api/v1/password-resets", json={"email": "A@example.org"})
    unknown = await c.post("/api/v1/password-resets", json={"email": "nobody@example.org"})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json()) == (
        202, SENT)
    assert portal.mails_to("nobody@example.org") == []
    token = reset_token(portal, "a@example.org")
    r = await c.post("/api/v1/password-resets/confirm", json={"token": token, "password": NEW})
    assert r.status_code == 204, r.text
    assert (await c.get("/api/v1/me/accounts", headers=auth)).status_code == 401
    r = await c.post("/api/v1/sessions", json={"email": "a@example.org", "password": NEW})
    assert r.status_code == 201
    again = await c.post("/api/v1/password-resets/confirm",
                         json={"token": token, "password": "yet another passphrase"})
    assert (again.status_code, again.json()) == (
        400, {"detail": "the reset token is unknown, used or expired"})


async def test_a_reset_token_expires_after_30_minutes(portal: MailPortal) -> None:
    c = portal.client
    await portal.login("a@example.org")
    await c.post("/api/v1/password-resets", json={"email": "a@example.org"})
    token = reset_token(portal, "a@example.org")
    portal.clock.set(NOW + timedelta(minutes=30))
    r = await c.post("/api/v1/password-resets/confirm", json={"token": token, "password": NEW})
    assert r.status_code == 400
    r = await c.post("/api/v1/sessions", json={"email": "a@example.org", "password": PASSWORD})
    assert r.status_code == 201  # the password is as it was


async def test_resets_are_capped_per_address_alike(portal: MailPortal) -> None:
    c = portal.client
    await portal.login("a@example.org")
    for address in ("a@example.org", "nobody@example.org"):
        for _ in range(3):
            r = await c.post("/api/v1/password-resets", json={"email": address})
            assert r.status_code == 202
        r = await c.post("/api/v1/password-resets", json={"email": address})
        assert r.status_code == 429 and r.headers["Retry-After"] == "3600", address
    assert len(portal.mails_to("a@example.org")) == 3
    portal.clock.set(NOW + timedelta(hours=1, seconds=1))
    r = await c.post("/api/v1/password-resets", json={"email": "a@example.org"})
    assert r.status_code == 202


async def test_without_mail_resets_answer_503_naming_the_config(store: SqliteStore) -> None:
    async with mail_portal(store, mail=False) as portal:
        c = portal.client
        for path, body in (("/api/v1/password-resets", {"email": "a@example.org"}),
                           ("/api/v1/password-resets/confirm",
                            {"token": "x", "password": NEW})):
            r = await c.post(path, json=body)
            assert r.status_code == 503 and "[notify] smtp_host" in r.json()["detail"]


async def test_a_failed_reset_mail_is_logged_without_token_or_address(
        portal: MailPortal) -> None:
    await portal.login("a@example.org")
    portal.inbox.refuse = "550 5.1.1 no such mailbox"
    with capture_logs() as logs:
        r = await portal.client.post("/api/v1/password-resets", json={"email": "a@example.org"})
    assert r.status_code == 202  # the same answer: the mail goes out after it
    [entry] = [e for e in logs if e["event"] == "mail not sent"]
    assert entry["domain"] == "example.org" and entry["what"] == "password reset"
    assert "a@example.org" not in repr(logs) and "token" not in repr(entry)
