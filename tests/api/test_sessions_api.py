"""A login's sessions and password on a real SqliteStore through httpx.ASGITransport:
listing (never a token), revoking one's own and not another login's, the last use,
and a password change that ends every other session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.store.sqlite import SqliteStore

from .mail_portal import MailPortal, mail_portal
from .test_customers_api import NOW, OPERATOR, PASSWORD

NEW = "a much better passphrase"


@pytest.fixture
async def portal(store: SqliteStore) -> AsyncIterator[MailPortal]:
    async with mail_portal(store) as p:
        yield p


async def sign_in(portal: MailPortal, email: str, password: str = PASSWORD) -> dict[str, str]:
    r = await portal.client.post("/api/v1/sessions", json={"email": email,
                                                           "password": password})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_sessions_are_listed_without_tokens_and_revoked(portal: MailPortal) -> None:
    c = portal.client
    first = await portal.login("a@example.org")
    portal.clock.set(NOW + timedelta(minutes=1))
    second = await sign_in(portal, "a@example.org")
    other = await portal.login("b@example.org")
    r = await c.get("/api/v1/me/sessions", headers=second)
    assert r.status_code == 200, r.text
    listed = r.json()["sessions"]
    assert [s["current"] for s in listed] == [False, True]
    assert listed[0]["created_at"] == "2026-12-02T12:00:00Z"
    assert listed[1]["expires_at"] == "2026-12-03T00:01:00Z"
    for token in (first, second):
        assert token["Authorization"].removeprefix("Bearer ") not in r.text
    assert set(listed[0]) == {"id", "created_at", "expires_at", "last_used_at", "current"}
    # Another login's session is not found, and stays signed in.
    [theirs] = (await c.get("/api/v1/me/sessions", headers=other)).json()["sessions"]
    r = await c.delete(f"/api/v1/me/sessions/{theirs['id']}", headers=first)
    assert (r.status_code, r.json()) == (404, {"detail": f"no session {theirs['id']}"})
    assert (await c.get("/api/v1/me/accounts", headers=other)).status_code == 200
    # One's own: ended.
    r = await c.delete(f"/api/v1/me/sessions/{listed[0]['id']}", headers=second)
    assert r.status_code == 204
    assert (await c.get("/api/v1/me/accounts", headers=first)).status_code == 401
    assert [s["id"] for s in (await c.get("/api/v1/me/sessions", headers=second)).json()[
        "sessions"]] == [listed[1]["id"]]
    # The operator token is no customer session.
    r = await c.get("/api/v1/me/sessions", headers={"Authorization": "Bearer s3cret-operator"
                                                                     "-token-0123456789"})
    assert r.status_code == 403


async def test_the_last_use_is_kept_to_within_five_minutes(portal: MailPortal) -> None:
    c = portal.client
    auth = await portal.login("a@example.org")

    async def last_used() -> str | None:
        [s] = (await c.get("/api/v1/me/sessions", headers=auth)).json()["sessions"]
        return s["last_used_at"]  # type: ignore[no-any-return]

    assert await last_used() == "2026-12-02T12:00:00Z"
    portal.clock.set(NOW + timedelta(minutes=4))
    assert await last_used() == "2026-12-02T12:00:00Z"  # not written again yet
    portal.clock.set(NOW + timedelta(minutes=6))
    assert await last_used() == "2026-12-02T12:06:00Z"


async def test_a_password_change_ends_every_other_session(portal: MailPortal) -> None:
    c = portal.client
    here = await portal.login("a@example.org")
    there = await sign_in(portal, "a@example.org")
    r = await c.put("/api/v1/me/password", headers=here,
                    json={"current_password": "not it", "new_password": NEW})
    assert (r.status_code, r.json()) == (403, {"detail": "the current password is wrong"})
    r = await c.put("/api/v1/me/password", headers=here,
                    json={"current_password": PASSWORD, "new_password": "short"})
    assert r.status_code == 422
    r = await c.put("/api/v1/me/password", headers=here,
                    json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 204, r.text
    assert (await c.get("/api/v1/me/accounts", headers=here)).status_code == 200
    assert (await c.get("/api/v1/me/accounts", headers=there)).status_code == 401
    old = await c.post("/api/v1/sessions", json={"email": "a@example.org",
                                                 "password": PASSWORD})
    assert old.status_code == 401
    await sign_in(portal, "a@example.org", NEW)


async def test_password_guesses_with_a_session_are_limited(portal: MailPortal) -> None:
    c = portal.client
    auth = await portal.login("a@example.org")
    for _ in range(5):
        r = await c.put("/api/v1/me/password", headers=auth,
                        json={"current_password": "guess", "new_password": NEW})
        assert r.status_code == 403
    r = await c.put("/api/v1/me/password", headers=auth,
                    json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 429 and "Retry-After" in r.headers
    portal.clock.set(NOW + timedelta(minutes=16))
    r = await c.put("/api/v1/me/password", headers=auth,
                    json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 204


#: The meter-less routes anyone may call: signing up and in, and those a mailed token
#: (or nothing at all) authorizes.
OPEN = {("POST", "/api/v1/customers"), ("POST", "/api/v1/sessions"),
        ("POST", "/api/v1/password-resets"), ("POST", "/api/v1/password-resets/confirm"),
        ("POST", "/api/v1/notifications/confirm"),
        ("POST", "/api/v1/notifications/unsubscribe"), ("GET", "/healthz")}


async def test_every_other_meter_less_route_wants_a_token(portal: MailPortal) -> None:
    """Each documented route without a meter in its path, as the app has them now: without
    a token it answers 401 unless it is one of OPEN; the /me routes are a customer's only
    (the operator token gets 403)."""
    c = portal.client
    routes = sorted((method.upper(), path)
                    for path, ops in portal.app.openapi()["paths"].items()
                    if "{meter_id}" not in path for method in ops)
    assert set(routes) >= OPEN
    for needed in ("/api/v1/me/sessions", "/api/v1/me/sessions/{session_id}",
                   "/api/v1/me/password"):
        assert needed in {p for _, p in routes}, needed
    for method, path in routes:
        url = path.replace("{session_id}", "1")
        r = await c.request(method, url, json={})
        if (method, path) in OPEN:
            assert r.status_code != 401, (method, path)
            continue
        assert r.status_code == 401, (method, path, r.status_code)
        if path.startswith("/api/v1/me/"):
            r = await c.request(method, url, json={}, headers=OPERATOR)
            assert r.status_code == 403, (method, path, r.status_code)
