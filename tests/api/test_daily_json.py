"""The daily reply's direct JSON encoding gives the very bytes of the ``DailyList`` model."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest

from gateway.api.daily_json import daily_list_json
from gateway.api.schemas import DailyList, day_out, kwh
from gateway.model import DailyUsage, Unit
from gateway.store.sqlite import SqliteStore

from .conftest import CHANNEL, METER


def usages(meter: str, unit: Unit) -> list[DailyUsage]:
    first = date(2026, 3, 7)
    return [
        DailyUsage(meter_id=meter, channel=CHANNEL, day=first + timedelta(days=i),
                   value=[0, 7, 999, 1000, 12_345_678, 5][i], unit=unit,
                   expected=[96, 92, 96, 100, 96, 96][i], present=[96, 92, 40, 100, 0, 97][i],
                   estimated=i, questionable=i % 2, edited=i % 3, derived=i % 4)
        for i in range(6)
    ]


@pytest.mark.parametrize(("meter", "unit"), [
    ("M-CHI-1", Unit.WH), ("Zähler \"7\" / 東", Unit.WH), ("M-VAR", Unit.VARH),
    ("M-KWH", Unit.KWH)])
def test_the_bytes_are_the_models(meter: str, unit: Unit) -> None:
    days = usages(meter, unit)
    checks = {days[0].day: ("daily_low",), days[3].day: ("daily_high", "daily_history_high")}
    total = sum(d.value for d in days)
    fields = {"meter_id": meter, "channel": CHANNEL, "timezone": "America/Chicago",
              "first": date(2026, 3, 1), "last": date(2026, 3, 31), "unit": unit.base.value,
              "total": total, "total_kwh": kwh(total, unit.base)}
    model = DailyList(**fields, days=[day_out(d, checks.get(d.day, ())) for d in days])
    assert daily_list_json(**fields, days=days, checks=checks) == \
        model.model_dump_json().encode()
    empty = DailyList(**fields, days=[])
    assert daily_list_json(**fields, days=[], checks={}) == empty.model_dump_json().encode()


async def test_the_route_answers_with_the_model_s_json(
        client: httpx.AsyncClient, store: SqliteStore) -> None:
    params = {"from": "2026-03-07", "to": "2026-11-02"}
    r = await client.get(f"/api/v1/meters/{METER}/daily", params=params)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    days = await store.daily(METER, CHANNEL, date(2026, 3, 7), date(2026, 11, 2))
    total = sum(d.value for d in days)
    model = DailyList(meter_id=METER, channel=CHANNEL, timezone="America/Chicago",
                      first=date(2026, 3, 7), last=date(2026, 11, 2), unit="Wh", total=total,
                      total_kwh=kwh(total, Unit.WH), days=[day_out(d) for d in days])
    assert r.content == model.model_dump_json().encode()


def test_kwh_is_the_exact_decimal() -> None:
    values = [*range(-2500, 2500), *(10**k + d for k in range(25) for d in (-1, 0, 1)),
              -(10**20) - 1]
    for v in values:
        assert kwh(v, Unit.WH) == f"{Decimal(v).scaleb(-3):f}"
    assert kwh(1500, Unit.VARH) is None
