"""Double opt-in for a customer's usage notifications, on a real SqliteStore, the real
notification task and a real SMTP server: a pending address gets the confirmation mail
and nothing else, a confirmed one its notices, each with a one-click unsubscribe link;
the per-address cap on confirmation mails; the operator's subscriptions unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from gateway.notify.letters import CONFIRM_PATH, UNSUBSCRIBE_PATH
from gateway.notify.task import Notifications
from gateway.store.sqlite import SqliteStore

from .conftest import METER
from .mail_portal import PUBLIC, MailPortal, mail_portal, token_in
from .test_customers_api import NOW, OPERATOR, OTHER

URL = f"/api/v1/meters/{METER}/notifications"
NO_DATA: dict[str, Any] = {"kind": "no_data", "address": "c@example.org", "days": 2}


@pytest.fixture
async def portal(store: SqliteStore) -> AsyncIterator[MailPortal]:
    async with mail_portal(store) as p:
        yield p


def task(portal: MailPortal, store: SqliteStore) -> Notifications:
    return Notifications(store, portal.notifier, portal.clock, accounts=store,
                         unsubscribes=store, public_url=PUBLIC)


async def test_a_pending_address_gets_only_the_confirmation_until_confirmed(
        portal: MailPortal, store: SqliteStore) -> None:
    c = portal.client
    auth = await portal.customer("c@example.org", ("C-100", "50.00"))
    r = await c.post(URL, headers=auth, json=NO_DATA)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    sub = r.json()["id"]
    [confirm] = portal.mails_to("c@example.org")
    assert confirm["Subject"] == "Confirm your address for usage notifications"
    assert confirm["List-Unsubscribe"] is None
    notices = task(portal, store)
    assert await notices.run_once() == 0  # a no_data notice is due, but not to this address
    assert len(portal.inbox.messages) == 1
    token = token_in(confirm, PUBLIC + CONFIRM_PATH)
    # The link opens a page with a button; opening it confirms nothing.
    page = await c.get(CONFIRM_PATH, params={"token": token})
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert (await c.get(f"{URL}/{sub}", headers=auth)).json()["status"] == "pending"
    r = await c.post(CONFIRM_PATH, params={"token": token}, headers={"Accept": "text/html"})
    assert r.status_code == 200 and "Address confirmed" in r.text
    r = await c.post(CONFIRM_PATH, params={"token": token})
    assert (r.status_code, r.json()) == (404, {"detail": "This link is unknown, used or "
                                                         "expired."})
    assert (await c.get(f"{URL}/{sub}", headers=auth)).json()["status"] == "active"
    assert await notices.run_once() == 1
    notice = portal.inbox.messages[-1]
    assert notice["To"] == "c@example.org" and "no data" in notice["Subject"]
    # A second notification to the confirmed address (any case) needs no new mail.
    r = await c.post(URL, headers=auth, json={**NO_DATA, "address": "C@Example.org"})
    assert r.status_code == 201 and r.json()["status"] == "active"
    assert len(portal.mails_to("c@example.org")) == 2  # the confirmation and the notice


async def test_every_notice_unsubscribes_in_one_click(portal: MailPortal,
                                                      store: SqliteStore) -> None:
    c = portal.client
    auth = await portal.customer("c@example.org", ("C-100", "50.00"))
    sub = (await c.post(URL, headers=auth, json=NO_DATA)).json()["id"]
    token = token_in(portal.mails_to("c@example.org")[0], PUBLIC + CONFIRM_PATH)
    assert (await c.post(CONFIRM_PATH, params={"token": token})).status_code == 200
    assert await task(portal, store).run_once() == 1
    notice = portal.inbox.messages[-1]
    header = notice["List-Unsubscribe"]
    assert header.startswith(f"<{PUBLIC}{UNSUBSCRIBE_PATH}?token=") and header.endswith(">")
    assert notice["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header[1:-1]
    assert token_in(notice, PUBLIC + UNSUBSCRIBE_PATH) == link.split("token=")[1]
    page = await c.get(link)
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert (await c.get(f"{URL}/{sub}", headers=auth)).status_code == 200
    # What a mail client sends for RFC 8058: no sign-in, a form body.
    r = await c.post(link, content=b"List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()) == (200, {"unsubscribed": True})
    assert (await c.get(f"{URL}/{sub}", headers=auth)).status_code == 404
    assert (await c.post(link)).status_code == 404


async def test_confirmation_mails_are_capped_per_address(portal: MailPortal) -> None:
    c = portal.client
    a = await portal.customer("c@example.org", ("C-100", "50.00"))
    b = await portal.customer("b@example.org", ("B-100", "10.00"))
    stranger = {**NO_DATA, "address": "stranger@example.org"}
    for _ in range(3):
        assert (await c.post(URL, headers=a, json=stranger)).status_code == 201
    r = await c.post(URL, headers=a, json=stranger)
    assert r.status_code == 429 and r.headers["Retry-After"] == "86400"
    # Whoever asks: another login, another meter, the same address.
    r = await c.post(f"/api/v1/meters/{OTHER}/notifications", headers=b, json=stranger)
    assert r.status_code == 429
    mine = (await c.get(URL, headers=a)).json()["notifications"]
    assert len(mine) == 3 and len(portal.mails_to("stranger@example.org")) == 3
    r = await c.post(f"{URL}/{mine[0]['id']}/confirmation", headers=a)
    assert r.status_code == 429
    portal.clock.set(NOW + timedelta(days=1, seconds=1))
    a = await portal.sign_in("c@example.org")
    r = await c.post(f"{URL}/{mine[0]['id']}/confirmation", headers=a)
    assert (r.status_code, r.json()) == (
        202, {"detail": "a confirmation link was mailed to stranger@example.org"})
    assert len(portal.mails_to("stranger@example.org")) == 4


async def test_a_confirmation_link_expires_and_is_the_login_s_own(portal: MailPortal) -> None:
    c = portal.client
    a = await portal.customer("c@example.org", ("C-100", "50.00"))
    b = await portal.customer("b@example.org", ("B-100", "10.00"))
    await c.post(URL, headers=a, json=NO_DATA)
    token = token_in(portal.mails_to("c@example.org")[0], PUBLIC + CONFIRM_PATH)
    portal.clock.set(NOW + timedelta(hours=48))
    assert (await c.post(CONFIRM_PATH, params={"token": token})).status_code == 404
    a, b = await portal.sign_in("c@example.org"), await portal.sign_in("b@example.org")
    [sub] = (await c.get(URL, headers=a)).json()["notifications"]
    assert (await c.post(f"{URL}/{sub['id']}/confirmation", headers=a)).status_code == 202
    token = token_in(portal.mails_to("c@example.org")[-1], PUBLIC + CONFIRM_PATH)
    assert (await c.post(CONFIRM_PATH, params={"token": token})).status_code == 200
    assert (await c.get(URL, headers=a)).json()["notifications"][0]["status"] == "active"
    # Confirmed for login A only: B's notification to the address is pending.
    r = await c.post(f"/api/v1/meters/{OTHER}/notifications", headers=b, json=NO_DATA)
    assert r.json()["status"] == "pending"
    again = await c.post(f"{URL}/{sub['id']}/confirmation", headers=a)
    assert again.status_code == 409


async def test_the_operator_s_subscriptions_need_no_confirmation(
        portal: MailPortal, store: SqliteStore) -> None:
    c = portal.client
    r = await c.post(URL, headers=OPERATOR, json=NO_DATA)
    assert r.status_code == 201 and r.json()["status"] == "active"
    assert portal.inbox.messages == []
    assert await task(portal, store).run_once() == 1
    assert portal.inbox.messages[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    r = await c.post(f"{URL}/{r.json()['id']}/confirmation", headers=OPERATOR)
    assert r.status_code == 409


async def test_without_mail_a_customer_s_notification_waits(store: SqliteStore) -> None:
    async with mail_portal(store, mail=False) as portal:
        c = portal.client
        auth = await portal.customer("c@example.org", ("C-100", "50.00"))
        r = await c.post(URL, headers=auth, json=NO_DATA)
        assert r.status_code == 201 and r.json()["status"] == "pending"
        r = await c.post(f"{URL}/{r.json()['id']}/confirmation", headers=auth)
        assert r.status_code == 503 and "[notify]" in r.json()["detail"]
        assert portal.inbox.messages == []
