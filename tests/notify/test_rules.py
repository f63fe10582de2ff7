"""The notification rules, day by day: thresholds exact, partial days not judged, DST
days, one notice per day or per outage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.model import DailyUsage, Unit
from gateway.notify.rules import JUDGE_DAYS, Subscription, describe, evaluate

CHI = ZoneInfo("America/Chicago")
CREATED = datetime(2026, 3, 1, 12, tzinfo=UTC)


def day(d: date, value: int, *, expected: int = 96, present: int | None = None,
        unit: Unit = Unit.WH) -> DailyUsage:
    return DailyUsage(meter_id="m1", channel="1.0.1.8.0.255", day=d, value=value, unit=unit,
                      expected=expected, present=expected if present is None else present)


def above(threshold: int = 10_000, key: str | None = None,
          created: datetime = CREATED) -> Subscription:
    return Subscription(id=7, meter_id="m1", kind="daily_above", threshold_wh=threshold,
                        address="a@example.org", created_at=created, last_sent_key=key)


def no_data(days: int = 3, key: str | None = None) -> Subscription:
    return Subscription(id=8, meter_id="m1", kind="no_data", days=days,
                        address="a@example.org", created_at=CREATED, last_sent_key=key)


D = date(2026, 3, 4)


def test_threshold_is_strictly_above_and_exact() -> None:
    at = [day(D, 10_000)]
    assert evaluate(above(10_000), at, None, D + timedelta(1), zone=CHI) is None
    n = evaluate(above(9_999), at, None, D + timedelta(1), zone=CHI)
    assert n is not None and n.key == "2026-03-04" and n.day == D
    assert (n.value_wh, n.threshold_wh, n.subscription_id) == (10_000, 9_999, 7)


def test_today_and_partial_days_are_not_judged() -> None:
    assert evaluate(above(), [day(D, 50_000)], None, D, zone=CHI) is None  # not over yet
    partial = [day(D, 50_000, present=95)]
    assert evaluate(above(), partial, None, D + timedelta(1), zone=CHI) is None


@pytest.mark.parametrize(("d", "expected"), [(date(2026, 3, 8), 92), (date(2026, 11, 1), 100)])
def test_dst_days_judged_by_their_own_length(d: date, expected: int) -> None:
    created = datetime(2026, 3, 1, tzinfo=UTC)
    short = [day(d, 20_000, expected=expected, present=expected - 1)]
    assert evaluate(above(created=created), short, None, d + timedelta(1), zone=CHI) is None
    full = [day(d, 20_000, expected=expected)]
    n = evaluate(above(created=created), full, None, d + timedelta(1), zone=CHI)
    assert n is not None and n.day == d


def test_a_sent_day_is_never_sent_again_and_days_come_in_order() -> None:
    rows = [day(D + timedelta(2), 30_000), day(D, 20_000), day(D + timedelta(1), 5)]
    today = D + timedelta(3)
    first = evaluate(above(), rows, None, today, zone=CHI)
    assert first is not None and first.day == D
    second = evaluate(above(key=first.key), rows, None, today, zone=CHI)
    assert second is not None and second.day == D + timedelta(2)
    assert evaluate(above(key=second.key), rows, None, today, zone=CHI) is None


def test_days_before_the_subscription_or_too_old_are_not_judged() -> None:
    # Created 2026-03-01 12:00 UTC = 06:00 in Chicago: that local day counts, the one before not.
    rows = [day(date(2026, 2, 28), 50_000), day(date(2026, 3, 1), 50_000)]
    n = evaluate(above(), rows, None, date(2026, 3, 5), zone=CHI)
    assert n is not None and n.day == date(2026, 3, 1)
    old = datetime(2025, 1, 1, tzinfo=UTC)
    today = date(2026, 3, 5)
    rows = [day(today - timedelta(JUDGE_DAYS + 1), 50_000),
            day(today - timedelta(JUDGE_DAYS), 50_000)]
    n = evaluate(above(created=old), rows, None, today, zone=CHI)
    assert n is not None and n.day == today - timedelta(JUDGE_DAYS)


def test_other_units_never_fire() -> None:
    assert evaluate(above(1), [day(D, 50, unit=Unit.VARH)], None, D + timedelta(1),
                    zone=CHI) is None


def test_no_data_counts_whole_days_since_the_last_day_with_data() -> None:
    rows = [day(D, 1_000)]
    # D+1, D+2 without data: 2 whole days when today is D+3.
    assert evaluate(no_data(3), rows, None, D + timedelta(3), zone=CHI) is None
    n = evaluate(no_data(3), rows, None, D + timedelta(4), zone=CHI)
    assert n is not None and n.key == "no_data:2026-03-04"
    assert (n.last_data_day, n.days_without_data, n.days) == (D, 3, 3)


def test_no_data_fires_once_per_outage() -> None:
    rows = [day(D, 1_000)]
    sent = evaluate(no_data(2), rows, None, D + timedelta(3), zone=CHI)
    assert sent is not None
    for later in range(3, 10):
        assert evaluate(no_data(2, sent.key), rows, None, D + timedelta(later), zone=CHI) is None
    # Data comes back on D+10 (a partial day counts as data), then stops again.
    back = [*rows, day(D + timedelta(10), 10, present=3)]
    assert evaluate(no_data(2, sent.key), back, None, D + timedelta(12), zone=CHI) is None
    again = evaluate(no_data(2, sent.key), back, None, D + timedelta(13), zone=CHI)
    assert again is not None and again.key == "no_data:2026-03-14"


def test_a_read_counts_as_data_on_its_local_day() -> None:
    rows = [day(D, 1_000)]
    read = datetime(2026, 3, 7, 3, tzinfo=UTC)  # 2026-03-06 21:00 in Chicago
    assert evaluate(no_data(2), rows, read, D + timedelta(4), zone=CHI) is None
    n = evaluate(no_data(2), rows, read, D + timedelta(5), zone=CHI)
    assert n is not None and n.last_data_day == date(2026, 3, 6)


def test_no_data_for_a_meter_that_never_sent_any() -> None:
    # Created on 2026-03-01 (local): 03-01 and 03-02 are without data by 03-03.
    assert evaluate(no_data(2), [], None, date(2026, 3, 2), zone=CHI) is None
    n = evaluate(no_data(2), [], None, date(2026, 3, 3), zone=CHI)
    assert n is not None and n.key == "no_data:never" and n.last_data_day is None
    assert evaluate(no_data(2, n.key), [], None, date(2026, 3, 9), zone=CHI) is None


def test_describe_gives_exact_kwh_and_the_facts() -> None:
    n = evaluate(above(12_345), [day(D, 12_346)], None, D + timedelta(1), zone=CHI)
    assert n is not None
    subject, body = describe(n)
    assert "m1" in subject and "2026-03-04" in subject
    assert "Usage: 12.346 kWh" in body and "Threshold: 12.345 kWh" in body
    m = evaluate(no_data(3), [day(D, 1)], None, D + timedelta(5), zone=CHI)
    assert m is not None
    subject, body = describe(m)
    assert "no data for 4 days" in subject and "Last day with data: 2026-03-04" in body
