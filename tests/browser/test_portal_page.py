"""The daily usage page in a real browser against a live portal."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.model import MeterStatus, Unit
from gateway.store import SeriesInfo

from .conftest import CHANNEL, METER_A, METER_B, METER_EMPTY, MeterSeed, PortalServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MARKED = ("estimated", "questionable")
# Chart colours (style.css): plain bars, estimated stripes, questionable hatching.
BAR_RGB = (0x25, 0x63, 0xEB)
ESTIMATED_RGB = (0xB4, 0x53, 0x09)
QUESTIONABLE_RGB = (0xB9, 0x1C, 0x1C)


def kwh(wh: int) -> str:
    return f"{Decimal(wh) / 1000:,.3f}"


def open_page(page: Page, portal: PortalServer, query: str = "") -> None:
    page.goto(f"{portal.base_url}/{query}")
    page.wait_for_selector("#chart[data-state=ready], #chart[data-state=empty]")


def wait_for_meter(page: Page, meter_id: str, state: str = "ready") -> None:
    page.wait_for_selector(f'#chart[data-meter="{meter_id}"][data-state="{state}"]')


def bars(page: Page) -> list[dict[str, str]]:
    found: list[dict[str, str]] = page.eval_on_selector_all(
        "#usage-chart .bar",
        "els => els.map(e => ({date: e.dataset.date, mark: e.dataset.mark, kwh: e.dataset.kwh}))",
    )
    return found


def marker_dates(page: Page, kind: str) -> set[str]:
    found: list[str] = page.eval_on_selector_all(
        f"#usage-chart .marks .mark-{kind}", "els => els.map(e => e.dataset.date)")
    return set(found)


def check_chart(page: Page, seed: MeterSeed) -> None:
    shown = bars(page)
    assert len(shown) == len(seed.days_back)
    assert {b["date"] for b in shown} == seed.dates(seed.days_back)
    marked = {b["date"] for b in shown if b["mark"] in MARKED}
    assert marked == seed.dates(seed.estimated | seed.questionable)
    assert marker_dates(page, "questionable") == seed.dates(seed.questionable)
    assert marker_dates(page, "estimated") == seed.dates(seed.estimated)
    by_date = {b["date"]: b for b in shown}
    assert by_date[seed.day(0).isoformat()]["mark"] == "incomplete"
    assert marker_dates(page, "incomplete") == seed.dates(seed.partial)
    for back in (1, 3, 7):
        if back in seed.days_back:
            want = f"{Decimal(seed.total_wh(frozenset({back}))) / 1000:.3f}"
            assert by_date[seed.day(back).isoformat()]["kwh"] == want
    title = page.text_content("#chart-title") or ""
    assert seed.meter_id in title
    assert f"{kwh(seed.total_wh(seed.days_back))} kWh total" in title


def test_bars_and_marks_match_the_stored_days(page: Page, portal: PortalServer) -> None:
    open_page(page, portal)
    wait_for_meter(page, METER_A.meter_id)  # the first meter is shown by default
    assert page.input_value("#meter") == METER_A.meter_id
    check_chart(page, METER_A)
    assert page.is_visible("#legend")
    # The table fallback holds one row per day with readings, marks included.
    rows = page.eval_on_selector_all("#table tbody tr", "els => els.map(e => e.dataset.mark)")
    assert len(rows) == len(METER_A.days_back)
    assert sum(mark in MARKED for mark in rows) == 3


def test_switching_meters_changes_the_chart(page: Page, portal: PortalServer) -> None:
    open_page(page, portal, "?meter=M-1001")
    wait_for_meter(page, METER_A.meter_id)
    page.select_option("#meter", METER_B.meter_id)
    wait_for_meter(page, METER_B.meter_id)
    check_chart(page, METER_B)
    assert "meter=M-2002" in page.url

    page.select_option("#meter", METER_EMPTY.meter_id)
    wait_for_meter(page, METER_EMPTY.meter_id, state="empty")
    assert page.locator("#usage-chart .bar").count() == 0
    assert "No readings yet" in (page.text_content("#plot") or "")
    assert page.is_hidden("#legend")

    page.check('input[name="days"][value="90"]')
    page.select_option("#meter", METER_A.meter_id)
    wait_for_meter(page, METER_A.meter_id)
    # 90 days hold the same 30 seeded days; the axis is longer, the title says so.
    assert len(bars(page)) == len(METER_A.days_back)
    assert "days=90" in page.url


def focus_first_bar(page: Page) -> str:
    """Tab from the meter select until a bar has focus; return its date."""
    page.focus("#meter")
    for _ in range(8):
        page.keyboard.press("Tab")
        date: str | None = page.evaluate(
            "document.activeElement.classList.contains('bar') "
            "? document.activeElement.dataset.date : null")
        if date:
            return date
    raise AssertionError("Tab never reached a bar of the chart")


def test_keyboard_reaches_a_bar_and_shows_its_tooltip(page: Page, portal: PortalServer) -> None:
    open_page(page, portal, "?meter=M-1001")
    wait_for_meter(page, METER_A.meter_id)
    date = focus_first_bar(page)
    assert date == METER_A.day(0).isoformat()  # the chart's tab stop is the latest day
    tip = page.locator("#tooltip")
    assert tip.is_visible() and tip.get_attribute("data-date") == date
    assert "Incomplete" in tip.inner_text()

    for _ in range(7):  # back to the questionable day
        page.keyboard.press("ArrowLeft")
    focused = page.evaluate("document.activeElement.dataset.date")
    assert focused == METER_A.day(7).isoformat()
    assert tip.get_attribute("data-date") == focused
    text = tip.inner_text()
    assert "1 questionable reading" in text
    assert kwh(METER_A.total_wh(frozenset({7}))) in text

    page.keyboard.press("Escape")
    assert tip.is_hidden()


def colour_counts(page: Page, png: bytes, colours: list[tuple[int, int, int]]) -> list[int]:
    """Pixels near each colour, decoded by the browser itself (no imaging library)."""
    counter = page.context.new_page()
    try:
        counts: list[int] = counter.evaluate(
            """async ({b64, colours}) => {
                const img = new Image();
                img.src = "data:image/png;base64," + b64;
                await img.decode();
                const canvas = document.createElement("canvas");
                canvas.width = img.width; canvas.height = img.height;
                const ctx = canvas.getContext("2d");
                ctx.drawImage(img, 0, 0);
                const px = ctx.getImageData(0, 0, img.width, img.height).data;
                const counts = colours.map(() => 0);
                for (let i = 0; i < px.length; i += 4) {
                    colours.forEach(([r, g, b], k) => {
                        if (Math.abs(px[i] - r) <= 8 && Math.abs(px[i + 1] - g) <= 8
                            && Math.abs(px[i + 2] - b) <= 8) counts[k] += 1;
                    });
                }
                return counts;
            }""",
            {"b64": base64.b64encode(png).decode(), "colours": colours},
        )
    finally:
        counter.close()
    return counts


def test_screenshot_shows_bars_and_marked_days(page: Page, portal: PortalServer) -> None:
    open_page(page, portal, "?meter=M-1001&days=30")
    wait_for_meter(page, METER_A.meter_id)
    page.focus(f'#usage-chart .bar[data-date="{METER_A.day(3).isoformat()}"]')
    assert page.is_visible("#tooltip")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "portal.png"
    png = page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    bar, estimated, questionable = colour_counts(
        page, png, [BAR_RGB, ESTIMATED_RGB, QUESTIONABLE_RGB])
    assert bar > 20_000, "the plain bars are missing from the screenshot"
    assert estimated > 300, "the estimated days' stripes are missing from the screenshot"
    assert questionable > 150, "the questionable day's hatching is missing from the screenshot"


def test_a_new_meter_and_new_days_appear_live(page: Page, portal: PortalServer) -> None:
    live = MeterSeed(meter_id="M-4004", timezone="UTC", base_wh=300,
                     days_back=frozenset({1, 2}), estimated=frozenset({2}))
    open_page(page, portal, "?refresh=1")
    wait_for_meter(page, METER_A.meter_id)

    async def add(back: int) -> None:
        store = portal.store
        assert store is not None
        await store.register_series(SeriesInfo(
            meter_id=live.meter_id, channel=CHANNEL, unit=Unit.WH, interval_s=900,
            timezone=live.timezone))
        await store.write_intervals(live.intervals(back))
        await store.set_meter_status(MeterStatus(
            meter_id=live.meter_id, timezone=live.timezone, status="ok",
            last_read_at=datetime.now(UTC)))

    portal.call(add(2))
    page.wait_for_selector('#meter option[value="M-4004"]', state="attached", timeout=5000)
    page.select_option("#meter", live.meter_id)
    wait_for_meter(page, live.meter_id)
    assert [b["mark"] for b in bars(page)] == ["estimated"]

    portal.call(add(1))
    page.wait_for_selector('#chart[data-meter="M-4004"][data-bars="2"]', timeout=5000)
    assert [b["mark"] for b in bars(page)] == ["estimated", "ok"]
