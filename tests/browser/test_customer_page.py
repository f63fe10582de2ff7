"""The page with customer sign-in on: accounts, usage markers and their comparison, a
day's intervals, monthly bars and the Green Button download, in a real browser."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .conftest import ACCOUNTS, METER_A, METER_B, OPERATOR_TOKEN, TWO_RATE, PortalServer
from .test_portal_page import ARTIFACTS, BAR_RGB, colour_counts

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
MARKER_RGB = (0x6D, 0x28, 0xD9)
ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"
_logins = itertools.count(1)


def account(meter_id: str) -> Any:
    return next(a for a in ACCOUNTS if a.meter_id == meter_id and a.valid_to is None)


def sign_up(page: Page, portal: PortalServer) -> str:
    email = f"customer{next(_logins)}@example.org"
    page.goto(portal.base_url + "/")
    page.wait_for_selector("#signin:not([hidden])")
    page.click("#show-signup")
    page.fill("#signup-email", email)
    page.fill("#signup-password", PASSWORD)
    page.fill("#signup-again", PASSWORD)
    page.click("#signup-form button[type=submit]")
    page.wait_for_selector("body[data-view=portal]")
    return email


def link(page: Page, meter_id: str, payment: str | None = None, number: str | None = None) -> None:
    a = account(meter_id)
    if not page.is_visible("#link-form"):
        page.click(".link-account summary")
    page.fill("#link-account", number or a.number)
    page.fill("#link-payment", payment or a.payment)
    page.click("#link-form button[type=submit]")


def fresh_account(portal: PortalServer, meter_id: str) -> str:
    """A new account number over the same days as the meter's seeded account: linking
    is limited to 5 tries per account number, and every test links one."""
    a = account(meter_id)
    number = f"{a.number}-{next(_logins)}"
    with operator(portal) as api:
        answer = api.post("/api/v1/accounts", json={"accounts": [{
            "account_number": number, "meter_id": meter_id,
            "valid_from": a.valid_from.isoformat(), "valid_to": None,
            "last_payment": a.payment}]})
        answer.raise_for_status()
    return number


def signed_in_with(page: Page, portal: PortalServer, *meters: str) -> None:
    sign_up(page, portal)
    for meter_id in meters:
        link(page, meter_id, number=fresh_account(portal, meter_id))
        page.wait_for_selector(f'#accounts-list li[data-meter="{meter_id}"]')
    page.wait_for_selector("#chart[data-state=ready]")


def operator(portal: PortalServer) -> httpx.Client:
    return httpx.Client(base_url=portal.base_url,
                        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})


def kwh_text(value: str) -> str:
    whole, _, frac = value.lstrip("-").partition(".")
    return f"{int(whole):,}.{frac}" if frac else f"{int(whole):,}"


def test_sign_in_is_asked_and_linking_shows_only_the_own_meters(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    page.goto(customer_portal.base_url + "/")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.is_hidden("#portal")
    # Nothing of any meter reached the page before signing in.
    assert page.locator("#meter option").all_inner_texts() == ["Loading meters…"]

    page.fill("#signin-email", "nobody@example.org")
    page.fill("#signin-password", "wrong password")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signin-message:not([hidden])")
    assert "Wrong e-mail or password" in page.inner_text("#signin-message")

    sign_up(page, customer_portal)
    page.wait_for_selector("#chart[data-state=empty]")
    assert "No meters on your accounts yet" in page.inner_text("#chart-title")

    link(page, METER_A.meter_id, payment="42.18")  # one cent off: refused, no hint why
    page.wait_for_selector("#link-message:not([hidden])")
    assert "No account matches" in page.inner_text("#link-message")

    link(page, METER_A.meter_id)
    page.wait_for_selector(f'#chart[data-meter="{METER_A.meter_id}"][data-state=ready]')
    link(page, TWO_RATE.meter_id)
    page.wait_for_selector(f'#meter option[value="{TWO_RATE.meter_id}"]', state="attached")
    options = page.eval_on_selector_all("#meter option", "els => els.map(e => e.value)")
    assert options == [METER_A.meter_id, TWO_RATE.meter_id]  # never M-2002 nor M-3003
    accounts = page.locator("#accounts-list li").all_inner_texts()
    assert len(accounts) == 2 and "ACC-1001-B" in accounts[0]

    # The 30-day view starts at the customer's first day: the previous occupant's days
    # (20 to 29 days back) are not drawn, nor summed in the title.
    dates = page.eval_on_selector_all("#usage-chart .bar", "els => els.map(e => e.dataset.date)")
    days = frozenset(range(21))
    assert set(dates) == METER_A.dates(days)
    total = Decimal(METER_A.total_wh(days)) / 1000
    assert f"{total:,.3f} kWh total" in page.inner_text("#chart-title")


def test_a_marker_made_on_the_page_is_drawn_and_compared(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    day = METER_A.day(10).isoformat()

    # From a day's drill-down: "Mark this day" opens the form on that day.
    page.click(f'#usage-chart .bar[data-date="{day}"]')
    page.wait_for_selector(f'#day-card[data-date="{day}"][data-state=ready]')
    page.click("#day-mark")
    assert page.input_value("#marker-start") == day
    page.fill("#marker-label", "New water heater")
    page.select_option("#marker-category", "appliance")
    page.fill("#marker-note", "Heat pump model, installed by the co-op")
    page.click("#marker-submit")

    item = page.wait_for_selector(".marker-item")
    assert item is not None
    marker_id = item.get_attribute("data-marker-id")
    assert "New water heater" in item.inner_text() and "New appliance" in item.inner_text()
    flag = page.locator(f'#usage-chart .marker-flag[data-marker-id="{marker_id}"]')
    assert flag.text_content() == "1"
    line = page.locator(f'#usage-chart .usage-marker[data-marker-id="{marker_id}"] .marker-line')
    bar = page.locator(f'#usage-chart .bar[data-date="{day}"]')
    x_bar = float(bar.get_attribute("x") or 0) + float(bar.get_attribute("width") or 0) / 2
    assert abs(float(line.get_attribute("x1") or 0) - x_bar) < 0.01  # on its day

    # Adding opens the comparison; 7 days on each side, as the API computes it.
    page.wait_for_selector("#comparison[data-state=ready]")
    page.select_option("#comparison-days", "7")
    with operator(customer_portal) as api:
        c = api.get(f"/api/v1/meters/{METER_A.meter_id}/markers/{marker_id}/comparison",
                    params={"days": 7}).json()
    page.wait_for_function(
        "want => document.querySelector('#comparison dd[data-window=before] .cmp-value')"
        "?.textContent.startsWith(want)", arg=kwh_text(c["before"]["average_kwh"]))
    result = page.inner_text("#comparison-result")
    verb = "fell" if c["change"] < 0 else "rose"
    assert f"{verb} by {kwh_text(c['change_kwh'])} kWh a day" in result
    assert c["change_percent"].lstrip("-") in result
    after = page.inner_text("#comparison dd[data-window=after] .cmp-value")
    assert after == f"{kwh_text(c['after']['average_kwh'])} kWh a day"
    # The 3rd day back holds estimates: the after window says so.
    notes = page.inner_text("#comparison .cmp-notes")
    assert "estimated" in notes

    # A range marker: a band over its days, numbered in date order.
    if not page.is_visible("#marker-form"):
        page.click("#marker-add summary")
    page.check('input[name="marker-kind"][value="range"]')
    page.fill("#marker-start", METER_A.day(5).isoformat())
    page.fill("#marker-end", METER_A.day(2).isoformat())
    page.fill("#marker-label", "Away on holiday")
    page.select_option("#marker-category", "occupancy")
    page.click("#marker-submit")
    page.wait_for_selector("#usage-chart .usage-marker.range .marker-band")
    band = page.locator("#usage-chart .usage-marker.range .marker-band")
    bar_w = float(page.locator("#usage-chart .day-band").first.get_attribute("width") or 0)
    assert abs(float(band.get_attribute("width") or 0) - 4 * bar_w) < 0.01  # 4 days
    labels = page.locator(".marker-item strong").all_inner_texts()
    assert labels == ["New water heater", "Away on holiday"]

    # Edit, then delete: the chart follows.
    page.click('.marker-item:has-text("Away on holiday") button:has-text("Edit")')
    page.fill("#marker-label", "Away (family visit)")
    page.click("#marker-submit")
    page.wait_for_selector('.marker-item:has-text("Away (family visit)")')
    page.once("dialog", lambda d: d.accept())
    page.click('.marker-item:has-text("Away (family visit)") button:has-text("Delete")')
    page.wait_for_selector("#usage-chart .usage-marker.range", state="detached")
    assert page.locator(".marker-item").count() == 1


@pytest.mark.answers(422)
def test_a_marker_outside_the_account_days_is_refused_on_the_page(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    page.click("#marker-add summary")
    assert page.get_attribute("#marker-start", "min") == METER_A.day(20).isoformat()
    # The browser's own check stops a day before the account; remove it to reach the API.
    page.eval_on_selector("#marker-start", "e => e.removeAttribute('min')")
    page.fill("#marker-start", METER_A.day(25).isoformat())
    page.fill("#marker-label", "Before my time")
    before = page.locator(".marker-item").count()
    with page.expect_response(lambda r: r.url.endswith("/markers") and r.status == 422):
        page.click("#marker-submit")
    page.wait_for_selector("#marker-message[data-kind=error]")
    assert "outside the days of your account" in page.inner_text("#marker-message")
    assert page.locator(".marker-item").count() == before


def test_a_day_opens_its_intervals_with_their_quality(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    day = METER_A.day(3)  # intervals 30-32 estimated
    page.focus(f'#usage-chart .bar[data-date="{day.isoformat()}"]')
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#day-card[data-date="{day.isoformat()}"][data-state=ready]')
    stored = METER_A.intervals(3)
    assert page.get_attribute("#day-card", "data-count") == str(len(stored))
    assert page.locator("#day-chart .iv").count() == len(stored)
    assert page.locator("#day-chart .iv-estimated").count() == 3
    assert page.locator("#day-table tbody tr").count() == len(stored)
    assert f"{sum(iv.value for iv in stored):,} Wh in all" in page.inner_text("#day-summary")
    page.click("#day-close")
    assert page.is_hidden("#day-card")
    assert page.evaluate("document.activeElement.dataset.date") == day.isoformat()


def test_monthly_bars_hold_only_whole_months_of_the_account(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_B.meter_id)
    page.wait_for_selector(f'#monthly-card[data-meter="{METER_B.meter_id}"][data-state=ready]')
    shown = page.eval_on_selector_all(
        "#monthly-chart .month-bar", "els => els.map(e => [e.dataset.month, e.dataset.kwh])")
    first_day = account(METER_B.meter_id).valid_from
    first_month = first_day.strftime("%Y-%m") if first_day.day == 1 else \
        f"{first_day.year + first_day.month // 12}-{first_day.month % 12 + 1:02d}"
    assert shown[0][0] == first_month
    with operator(customer_portal) as api:
        want = api.get(f"/api/v1/meters/{METER_B.meter_id}/monthly",
                       params={"from": shown[0][0], "to": shown[-1][0]}).json()
    assert shown == [[m["month"], m["value_kwh"]] for m in want["months"]]
    assert page.locator("#monthly-table tbody tr").count() == len(shown)


def test_green_button_download(customer_page: Page, customer_portal: PortalServer,
                               tmp_path: Path) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    first, last = METER_A.day(7).isoformat(), METER_A.day(1).isoformat()
    page.fill("#download-from", first)
    page.fill("#download-to", last)
    with page.expect_download() as info:
        page.click("#download-button")
    download = info.value
    assert download.suggested_filename == f"greenbutton-{METER_A.meter_id}-{first}-{last}.xml"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    feed = ET.parse(path).getroot()
    assert feed.tag == f"{ATOM}feed"
    blocks = feed.findall(f".//{ESPI}IntervalBlock")
    assert len(blocks) == 7
    readings = sum(len(b.findall(f"{ESPI}IntervalReading")) for b in blocks)
    assert readings == sum(len(METER_A.intervals(b)) for b in range(1, 8))

    page.check('input[name="download-format"][value="csv"]')
    with page.expect_download() as info:
        page.click("#download-button")
    assert info.value.suggested_filename.endswith(".csv")
    page.wait_for_selector("#download-message[data-kind=info]")


def test_sign_out_leaves_nothing_behind(customer_page: Page,
                                        customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    assert page.is_visible("#who") and "@example.org" in page.inner_text("#who-email")
    page.reload()  # the session survives a reload of the tab
    page.wait_for_selector(f'#chart[data-meter="{METER_A.meter_id}"][data-state=ready]')
    page.click("#sign-out")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.locator("#usage-chart").count() == 0
    assert page.locator("#accounts-list li").count() == 0
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    page.wait_for_selector("#signin:not([hidden])")


# ---------------------------------------------------------------- accessibility

_CONTRAST = """() => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el) continue;
    if (el.closest("svg, [hidden], .visually-hidden, option")) continue;
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || Number(style.opacity) < 1) continue;
    const fg = lum(parse(style.color).slice(0, 3));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const what = n.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) low.push(`${what}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""

_UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((e) => e.getClientRects().length)
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
    && !(e.tagName === "BUTTON" && e.textContent.trim()))
  .map((e) => e.id || e.outerHTML.slice(0, 60))"""


def test_every_control_is_labelled_and_all_text_has_contrast(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    page.goto(customer_portal.base_url + "/")
    page.wait_for_selector("#signin:not([hidden])")
    page.click("#show-signup")
    page.click("#show-forgot")
    assert page.evaluate(_UNLABELLED) == []
    assert page.evaluate(_CONTRAST) == []
    # The checks see a faint text and a bare input (so an empty answer means something).
    page.evaluate("""() => {
        const probe = document.createElement("div");
        probe.id = "probe";
        const faint = document.createElement("p");
        faint.textContent = "faint text";
        faint.style.color = "#aaa";  // through the CSSOM: the page's CSP refuses style attributes
        const bare = document.createElement("input");
        bare.id = "bare";
        probe.append(faint, bare);
        document.querySelector("#signin").appendChild(probe);
    }""")
    assert page.evaluate(_CONTRAST) == ["faint text: 2.32"]
    assert page.evaluate(_UNLABELLED) == ["bare"]
    page.evaluate("document.querySelector('#probe').remove()")

    signed_in_with(page, customer_portal, METER_A.meter_id)
    page.click(f'#usage-chart .bar[data-date="{METER_A.day(6).isoformat()}"]')
    page.wait_for_selector("#day-card[data-state=ready]")
    page.click("#day-mark")
    page.fill("#marker-label", "Insulated the attic")
    page.click("#marker-submit")
    page.wait_for_selector("#comparison[data-state=ready]")
    for box in ("#table-box", ".link-account", "#settings"):
        page.eval_on_selector(box, "e => { e.open = true; }")
    assert page.evaluate(_UNLABELLED) == []
    assert page.evaluate(_CONTRAST) == []


def test_the_whole_flow_works_from_the_keyboard(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    # Tab from the meter picker reaches the chart, then a day's intervals open on Enter.
    page.focus("#meter")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('bar')"):
            break
    else:
        pytest.fail("Tab never reached the chart's bars")
    page.keyboard.press("ArrowLeft")
    date = page.evaluate("document.activeElement.dataset.date")
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#day-card[data-date="{date}"][data-state=ready]')
    page.focus("#day-mark")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "marker-label"
    page.keyboard.type("Solar panels on")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector('.marker-item:has-text("Solar panels on")')
    page.wait_for_selector("#comparison[data-state=ready]")


def test_screenshot_shows_markers_and_the_comparison(
        customer_page: Page, customer_portal: PortalServer) -> None:
    page = customer_page
    signed_in_with(page, customer_portal, METER_A.meter_id)
    page.click(f'#usage-chart .bar[data-date="{METER_A.day(12).isoformat()}"]')
    page.click("#day-mark")
    page.fill("#marker-label", "New fridge")
    page.click("#marker-submit")
    page.wait_for_selector("#comparison[data-state=ready]")
    page.wait_for_selector("#monthly-card[data-state=ready]")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "portal-customer.png"
    png = page.screenshot(path=str(shot), full_page=True)
    bar, marker = colour_counts(page, png, [BAR_RGB, MARKER_RGB])
    assert bar > 20_000, "the daily and monthly bars are missing from the screenshot"
    # The flag, the dashed line, the list's number and the comparison's after bar.
    assert marker > 1_500, "the marker and its comparison are missing from the screenshot"
