"""The notification task end to end: a SqliteStore, a ManualClock and a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.clock import ManualClock
from gateway.errors import SinkError
from gateway.model import IntervalReading, MeterStatus, Unit
from gateway.notify.rules import SubscriptionFields
from gateway.notify.smtp import SmtpNotifier
from gateway.notify.task import Notifications
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from tests.notify.smtp_server import Inbox, smtp_server

CHI = ZoneInfo("America/Chicago")
CH = "1.0.1.8.0.255"


def local(d: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=CHI)


def day_of(d: date, wh_per_quarter: int, quarters: int = 96) -> list[IntervalReading]:
    return [IntervalReading(meter_id="m1", channel=CH, start=local(d) + timedelta(minutes=15 * i),
                            length_s=900, value=wh_per_quarter, unit=Unit.WH)
            for i in range(quarters)]


D = date(2026, 3, 4)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    async with smtp_server() as box:
        yield box


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    await s.register_series(SeriesInfo(meter_id="m1", channel=CH, unit=Unit.WH,
                                       interval_s=900, timezone="America/Chicago"))
    await s.set_meter_status(MeterStatus(meter_id="m1", timezone="America/Chicago",
                                         status="ok", last_read_at=local(D, 23, 59)))
    yield s
    await s.close()


def task(store: SqliteStore, inbox: Inbox, clock: ManualClock) -> Notifications:
    notifier = SmtpNotifier("127.0.0.1", inbox.port, "gw@example.org", starttls=False,
                            timeout_s=3)
    return Notifications(store, notifier, clock, every_s=60)


async def test_a_day_above_the_threshold_sends_one_email(store: SqliteStore,
                                                         inbox: Inbox) -> None:
    clock = ManualClock(local(D - timedelta(days=1), 9))
    sub = await store.add_notification(
        "m1", SubscriptionFields(kind="daily_above", address="c@example.org",
                                 threshold_wh=9_599), at=clock.now())
    await store.write_intervals(day_of(D, 100))  # 9.600 kWh
    await store.write_intervals(day_of(D + timedelta(days=1), 10, quarters=40))  # partial
    clock.set(local(D + timedelta(days=1), 10))
    t = task(store, inbox, clock)
    assert await t.run_once() == 1  # D is over and complete; D+1 is today
    assert len(inbox.messages) == 1
    assert await t.run_once() == 0
    assert await task(store, inbox, clock).run_once() == 0  # after a restart too
    [msg] = inbox.messages
    assert msg["To"] == "c@example.org" and "2026-03-04" in msg["Subject"]
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes) and "Usage: 9.600 kWh" in body.decode()
    got = await store.notification("m1", sub.id)
    assert got is not None and got.last_sent_key == "2026-03-04"


async def test_a_refused_notice_is_sent_on_the_next_run_once(store: SqliteStore,
                                                             inbox: Inbox) -> None:
    clock = ManualClock(local(D, 1))
    sub = await store.add_notification(
        "m1", SubscriptionFields(kind="daily_above", address="c@example.org",
                                 threshold_wh=9_000), at=clock.now())
    await store.write_intervals(day_of(D, 100))
    clock.set(local(D + timedelta(days=1), 6))
    t = task(store, inbox, clock)
    inbox.refuse = "451 4.3.0 try later"
    assert await t.run_once() == 0 and t.failed == 1
    got = await store.notification("m1", sub.id)
    assert got is not None and got.last_sent_key is None
    inbox.refuse = None
    assert await t.run_once() == 1
    assert await t.run_once() == 0
    assert len(inbox.messages) == 1 and t.sent == 1


async def test_no_data_for_n_days_sends_one(store: SqliteStore, inbox: Inbox) -> None:
    clock = ManualClock(local(D, 1))
    await store.add_notification(
        "m1", SubscriptionFields(kind="no_data", address="q@example.org", days=2),
        at=clock.now())
    await store.write_intervals(day_of(D, 100, quarters=10))
    t = task(store, inbox, clock)
    clock.set(local(D + timedelta(days=2), 12))  # only D+1 without data
    assert await t.run_once() == 0
    clock.set(local(D + timedelta(days=3), 0, 1))  # D+1 and D+2 without data
    assert await t.run_once() == 1
    clock.set(local(D + timedelta(days=9)))
    assert await t.run_once() == 0
    [msg] = inbox.messages
    assert "no data for 2 days" in msg["Subject"]
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes) and "Last day with data: 2026-03-04" in body.decode()


async def test_several_days_above_send_one_each_in_order(store: SqliteStore,
                                                         inbox: Inbox) -> None:
    clock = ManualClock(local(D, 1))
    await store.add_notification(
        "m1", SubscriptionFields(kind="daily_above", address="c@example.org",
                                 threshold_wh=1_000), at=clock.now())
    for k in range(3):
        await store.write_intervals(day_of(D + timedelta(days=k), 50))
    clock.set(local(D + timedelta(days=3), 8))
    assert await task(store, inbox, clock).run_once() == 3
    assert [m["Subject"].split()[4] for m in inbox.messages] == [
        "2026-03-04", "2026-03-05", "2026-03-06"]


async def test_run_judges_every_period(store: SqliteStore, inbox: Inbox) -> None:
    clock = ManualClock(local(D, 1))
    await store.add_notification(
        "m1", SubscriptionFields(kind="daily_above", address="c@example.org",
                                 threshold_wh=1_000), at=clock.now())
    t = task(store, inbox, clock)
    running = asyncio.create_task(t.run())
    try:
        await asyncio.sleep(0.05)
        await store.write_intervals(day_of(D, 50))
        clock.set(local(D + timedelta(days=1), 0, 5))  # past the next run's time
        async with asyncio.timeout(3):
            while not t.sent:  # noqa: ASYNC110 - the task offers no event
                await asyncio.sleep(0.01)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert t.sent == 1


class LosesTheFirstSend(SqliteStore):
    """The store fails once to record a send: a crash just after the server accepted."""

    failed = False

    async def notification_sent(self, notification_id: int, key: str, address: str, *,
                                at: datetime) -> bool:
        if not self.failed:
            self.failed = True
            raise SinkError("disk full", retryable=True)
        return await super().notification_sent(notification_id, key, address, at=at)


async def test_a_send_not_recorded_is_sent_again_once(tmp_path: Path, inbox: Inbox) -> None:
    store = LosesTheFirstSend(tmp_path / "s.db")
    await store.open()
    try:
        await store.register_series(SeriesInfo(meter_id="m1", channel=CH, unit=Unit.WH,
                                               interval_s=900, timezone="America/Chicago"))
        await store.set_meter_status(MeterStatus(meter_id="m1", timezone="America/Chicago"))
        clock = ManualClock(local(D, 1))
        await store.add_notification(
            "m1", SubscriptionFields(kind="daily_above", address="c@example.org",
                                     threshold_wh=1_000), at=clock.now())
        await store.write_intervals(day_of(D, 50))
        clock.set(local(D + timedelta(days=1), 6))
        t = task(store, inbox, clock)
        assert await t.run_once() == 0 and len(inbox.messages) == 1  # sent, not recorded
        assert await t.run_once() == 1 and len(inbox.messages) == 2  # at most once more
        assert await t.run_once() == 0 and len(inbox.messages) == 2
    finally:
        await store.close()


async def test_a_customer_hears_nothing_of_the_meter_after_moving_out(store: SqliteStore,
                                                                     inbox: Inbox) -> None:
    """With customer access on, a subscription a customer made only tells them about
    days their account held the meter: the next occupant's usage stays theirs."""
    from gateway.accounts import BillingAccount

    moved_out = D + timedelta(days=1)  # the account ends: D is the last day held
    await store.put_accounts([BillingAccount(
        account_number="A-1", meter_id="m1", valid_from=date(2026, 1, 1),
        valid_to=moved_out, last_payment_cents=4217)])
    customer = await store.add_customer("a@example.org", b"salt", b"digest", at=local(D, 8))
    assert customer is not None
    assert await store.link(customer, "A-1", 4217, at=local(D, 8))
    clock = ManualClock(local(D, 9))
    sub = await store.add_notification(
        "m1", SubscriptionFields(kind="daily_above", address="a@example.org",
                                 threshold_wh=1_000), at=clock.now())
    await store.own_notification(sub.id, customer)
    await store.write_intervals(day_of(D, 100))  # the customer's last day
    await store.write_intervals(day_of(moved_out, 100))  # the next occupant's first
    clock.set(local(moved_out + timedelta(days=1), 10))
    notifier = SmtpNotifier("127.0.0.1", inbox.port, "gw@example.org", starttls=False,
                            timeout_s=3)
    owners_off = Notifications(store, notifier, clock, every_s=60)
    owners_on = Notifications(store, notifier, clock, every_s=60, accounts=store)
    assert await owners_on.run_once() == 0  # no longer theirs: nothing, not even day D
    assert inbox.messages == []
    assert await owners_off.run_once() == 2  # without customer access: every day
