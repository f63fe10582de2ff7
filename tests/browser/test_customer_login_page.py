"""The page's login side with a real SMTP server behind the portal: a forgotten password
reset from the mailed link, the password change ending the other sessions, and usage
alerts by e-mail waiting for their address's confirmation."""

from __future__ import annotations

import re
import time
from email.message import Message
from typing import TYPE_CHECKING

import httpx
import pytest

from .conftest import METER_A, PortalServer
from .test_customer_page import PASSWORD, operator, sign_up, signed_in_with

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser


def mail_to(portal: PortalServer, address: str, subject: str, timeout_s: float = 10) -> Message:
    """The last mail to ``address`` whose subject holds ``subject`` (sent after the reply)."""
    assert portal.inbox is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [m for m in portal.inbox.messages
                 if m["To"] == address and subject in str(m["Subject"])]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no mail {subject!r} to {address}")


def body_of(msg: Message) -> str:
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    return body.decode()


def test_a_forgotten_password_is_reset_from_the_mailed_link(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    email = sign_up(page, customer_portal)
    page.click("#sign-out")
    page.wait_for_selector("#signin:not([hidden])")

    page.fill("#signin-email", email)
    page.click("#show-forgot")
    assert page.input_value("#forgot-email") == email
    page.click("#forgot-form button[type=submit]")
    page.wait_for_selector("#forgot-message[data-kind=info]")
    link = re.search(r"(http://\S+/#reset=\S+)", body_of(mail_to(customer_portal, email, "Reset")))
    assert link is not None

    page.goto(link.group(1))
    page.wait_for_selector("#reset:not([hidden])")
    assert "#reset=" not in page.url  # the token leaves the address bar (and the history)
    new = "a brand new passphrase"
    page.fill("#reset-password", new)
    page.fill("#reset-again", new)
    page.click("#reset-form button[type=submit]")
    page.wait_for_selector("#signin:not([hidden])")
    assert "password is changed" in page.inner_text("#signin-message")

    with httpx.Client(base_url=customer_portal.base_url) as api:
        old = api.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401
    page.fill("#signin-email", email)
    page.fill("#signin-password", new)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("body[data-view=portal]")


@pytest.mark.answers(400)
def test_a_used_reset_link_says_so(customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    page.goto(customer_portal.base_url + "/#reset=not-a-token")
    page.wait_for_selector("#reset:not([hidden])")
    page.fill("#reset-password", "whatever it is now")
    page.fill("#reset-again", "whatever it is now")
    page.click("#reset-form button[type=submit]")
    page.wait_for_selector("#reset-message:not([hidden])")
    assert "used or has expired" in page.inner_text("#reset-message")


def test_changing_the_password_signs_out_the_other_sessions(
        customer_page: Page, customer_portal: PortalServer, browser: Browser) -> None:
    page = customer_page
    email = sign_up(page, customer_portal)
    with httpx.Client(base_url=customer_portal.base_url) as api:  # another browser
        other = api.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
        other_token = other.json()["token"]
    page.click("#settings summary")
    page.wait_for_selector("#sessions-list li >> nth=1")
    rows = page.locator("#sessions-list li").all_inner_texts()
    assert sum("This browser" in r for r in rows) == 1 and len(rows) == 2
    page.fill("#current-password", PASSWORD)
    page.fill("#new-password", "another long passphrase")
    page.fill("#new-again", "another long passphrase")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("#password-message[data-kind=info]")
    page.wait_for_function("document.querySelectorAll('#sessions-list li').length === 1")
    with httpx.Client(base_url=customer_portal.base_url) as api:
        ended = api.get("/api/v1/me/accounts", headers={"Authorization": f"Bearer {other_token}"})
        assert ended.status_code == 401
    # This browser stays signed in.
    page.reload()
    page.wait_for_selector("body[data-view=portal]")


def test_an_alert_waits_for_its_address_and_is_removed_from_the_page(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    page.wait_for_selector(f'#alerts-card[data-meter="{METER_A.meter_id}"]')
    page.fill("#alert-threshold", "35.5")
    page.fill("#alert-address", "household@example.org")
    page.click("#alert-form button[type=submit]")
    item = page.wait_for_selector(".alert-item[data-status=pending]")
    assert item is not None
    assert "A day above 35.5 kWh → household@example.org" in item.inner_text()
    alert_id = item.get_attribute("data-notification-id")
    with operator(customer_portal) as api:
        stored = api.get(f"/api/v1/meters/{METER_A.meter_id}/notifications/{alert_id}").json()
    assert stored["threshold_wh"] == 35_500 and stored["kind"] == "daily_above"

    confirm = re.search(r"(http://\S+/api/v1/notifications/confirm\?token=\S+)",
                        body_of(mail_to(customer_portal, "household@example.org", "Confirm")))
    assert confirm is not None
    with httpx.Client() as browser_of_the_household:
        assert browser_of_the_household.post(confirm.group(1)).status_code == 200
    page.wait_for_selector(f'.alert-item[data-notification-id="{alert_id}"][data-status=active]',
                           timeout=15_000)  # the page refreshes by itself

    page.check('input[name="alert-kind"][value="no_data"]')
    assert page.is_hidden("#alert-threshold-field")
    page.fill("#alert-days", "3")
    page.fill("#alert-address", "household@example.org")  # confirmed: active at once
    page.click("#alert-form button[type=submit]")
    page.wait_for_selector('.alert-item:has-text("No data for 3 days")[data-status=active]')

    page.click(f'.alert-item[data-notification-id="{alert_id}"] button:has-text("Remove")')
    page.wait_for_selector(f'.alert-item[data-notification-id="{alert_id}"]', state="detached")
    assert page.locator(".alert-item").count() == 1
