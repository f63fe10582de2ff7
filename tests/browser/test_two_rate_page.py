"""A two-rate meter on the daily usage page: stacked rates, their legend and total, and a
day flagged by the daily usage check, by pointer and by keyboard."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from .conftest import METER_A, TWO_RATE, PortalServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

DAY_RATE, NIGHT_RATE = TWO_RATE.channels[1], TWO_RATE.channels[2]


def kwh(wh: int) -> str:
    return f"{Decimal(wh) / 1000:,.3f}"


def open_two_rate(page: Page, portal: PortalServer) -> None:
    page.goto(f"{portal.base_url}/?meter={TWO_RATE.meter_id}")
    page.wait_for_selector(f'#chart[data-meter="{TWO_RATE.meter_id}"][data-state="ready"]')


def test_rates_are_stacked_under_the_total_with_a_legend(page: Page,
                                                         portal: PortalServer) -> None:
    open_two_rate(page, portal)
    shown = page.eval_on_selector_all(
        "#usage-chart .bar", "els => els.map(e => [e.dataset.date, e.dataset.kwh])")
    assert len(shown) == 11  # ten whole days and the first hours of today
    day = TWO_RATE.day(2).isoformat()
    assert dict(shown)[day] == f"{Decimal(TWO_RATE.total_wh(2)) / 1000:.3f}"
    # One segment per rate, the night rate stacked on the day rate, each to scale.
    segments = page.eval_on_selector_all(
        f'#usage-chart .seg[data-date="{day}"]',
        "els => els.map(e => [e.dataset.channel, e.getBBox().y, e.getBBox().height])")
    assert [s[0] for s in segments] == [DAY_RATE, NIGHT_RATE]
    (_, day_y, day_h), (_, night_y, night_h) = segments
    assert night_y + night_h == pytest.approx(day_y, abs=0.01)
    assert day_h / night_h == pytest.approx(TWO_RATE.total_wh(2, 1) / TWO_RATE.total_wh(2, 2),
                                            rel=0.02)
    # The legend names both rates and the total; the single-rate swatch steps aside.
    legend = page.inner_text("#legend")
    assert "Day rate" in legend and "Night rate" in legend and "Total:" in legend
    assert page.is_hidden("#legend-measured") and page.is_visible("#legend-check")
    # The table has a column per rate and the total, which is their sum.
    heads = page.eval_on_selector_all("#table thead th", "els => els.map(e => e.textContent)")
    assert heads[:4] == ["Date", "Day rate (kWh)", "Night rate (kWh)", "Total (kWh)"]
    page.click("#table-box summary")
    row = page.eval_on_selector_all(
        "#table tbody tr", "els => els.map(e => [...e.cells].map(c => c.textContent))")[2]
    assert row[1:4] == [kwh(TWO_RATE.total_wh(2, 1)), kwh(TWO_RATE.total_wh(2, 2)),
                        kwh(TWO_RATE.total_wh(2))]


def test_the_flagged_day_is_marked_and_explained(page: Page, portal: PortalServer) -> None:
    open_two_rate(page, portal)
    heavy = TWO_RATE.day(TWO_RATE.heavy_back).isoformat()
    flagged = page.eval_on_selector_all(
        "#usage-chart .bar[data-checks]:not([data-checks=''])",
        "els => els.map(e => [e.dataset.date, e.dataset.checks])")
    assert flagged == [[heavy, "daily_high"]]
    marks = page.eval_on_selector_all("#usage-chart .marks .mark-check",
                                      "els => els.map(e => e.dataset.date)")
    assert marks == [heavy]
    assert "1 day failing a usage check" in (page.text_content("#chart-summary") or "")
    label = page.get_attribute(f'#usage-chart .bar[data-date="{heavy}"]', "aria-label") or ""
    assert "above the daily high limit" in label and "Day rate" in label

    # By keyboard: Tab to the chart (today), then left to the flagged day.
    page.focus("#meter")
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('bar')"):
            break
    assert page.evaluate("document.activeElement.dataset.date") == TWO_RATE.day(0).isoformat()
    for _ in range(TWO_RATE.heavy_back):
        page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.dataset.date") == heavy
    tip = page.locator("#tooltip")
    assert tip.is_visible() and tip.get_attribute("data-date") == heavy
    text = tip.inner_text()
    assert f"{kwh(TWO_RATE.total_wh(TWO_RATE.heavy_back))} kWh total" in text
    assert f"Day rate: {kwh(TWO_RATE.total_wh(TWO_RATE.heavy_back, 1))} kWh" in text
    assert f"Night rate: {kwh(TWO_RATE.total_wh(TWO_RATE.heavy_back, 2))} kWh" in text
    assert "Usage check: above the daily high limit" in text


def test_switching_back_to_a_single_rate_meter_restores_the_plain_view(
    page: Page, portal: PortalServer,
) -> None:
    open_two_rate(page, portal)
    page.select_option("#meter", METER_A.meter_id)
    page.wait_for_selector(f'#chart[data-meter="{METER_A.meter_id}"][data-state="ready"]')
    assert page.locator("#usage-chart .seg").count() == 0
    assert page.locator("#legend .legend-rate").count() == 0
    assert page.is_visible("#legend-measured")
    assert page.locator("#usage-chart .mark-check").count() == 0
    heads = page.eval_on_selector_all("#table thead th", "els => els.map(e => e.textContent)")
    assert heads == ["Date", "Usage (kWh)", "Readings", "Quality"]
