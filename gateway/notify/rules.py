"""Usage notifications a customer sets on a meter, judged by pure rules (no I/O, no clock).

Two kinds:

* ``daily_above``: a complete local day whose usage is strictly above ``threshold_wh``.
  The notice's key is the day, and days are judged in order after the last one sent,
  so a day is never sent twice, even across restarts (the key is stored with the send).
  Today is never judged (it is not over), nor is a day with intervals missing, nor a day
  before the subscription existed (no flood of old days on creation), nor one older than
  ``JUDGE_DAYS``. A day that becomes complete only after a later day was sent is skipped:
  the stored key is one position, not a set.
* ``no_data``: ``days`` whole local days have passed with no data since the last day
  with data. The key names that last day, so one outage sends one notice; once data
  comes back the last day moves and the next outage gets a new key.

``evaluate`` gives the first notice due, or ``None``; the caller sends it, stores its
key, and asks again (several days above the threshold give one notice each).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Literal

import msgspec

from gateway.errors import DataError
from gateway.model import DailyUsage, Unit

__all__ = [
    "ADDRESS_MAX", "DEFAULT_CHANNEL", "JUDGE_DAYS", "KINDS", "MAX_NO_DATA_DAYS",
    "MAX_THRESHOLD_WH", "Kind", "Notice", "Subscription", "SubscriptionFields", "check_fields",
    "describe", "evaluate",
]

DEFAULT_CHANNEL = "1.0.1.8.0.255"
#: Days before today that ``daily_above`` still judges (after an outage of the gateway).
JUDGE_DAYS = 31
MAX_NO_DATA_DAYS = 366
#: 10 GWh a day: far above any meter a customer sets a threshold on (and within SQLite).
MAX_THRESHOLD_WH = 10**10
ADDRESS_MAX = 254

Kind = Literal["daily_above", "no_data"]
KINDS: tuple[Kind, ...] = ("daily_above", "no_data")


class SubscriptionFields(msgspec.Struct, frozen=True, kw_only=True):
    """What is set on a subscription: ``threshold_wh`` for daily_above, ``days`` for no_data."""

    kind: Kind
    address: str
    channel: str = DEFAULT_CHANNEL
    threshold_wh: int | None = None
    days: int | None = None


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    meter_id: str
    channel: str = DEFAULT_CHANNEL
    kind: Kind
    threshold_wh: int | None = None
    days: int | None = None
    address: str
    created_at: datetime
    #: The key of the last notice the mail server accepted; ``None`` before the first.
    last_sent_key: str | None = None
    last_sent_at: datetime | None = None


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One notification to send. ``key`` is stored once the notifier accepted it."""

    subscription_id: int
    meter_id: str
    channel: str
    kind: Kind
    address: str
    key: str
    #: daily_above: the day judged, its usage and the threshold (Wh).
    day: date | None = None
    value_wh: int | None = None
    threshold_wh: int | None = None
    #: no_data: the days asked for, the last local day with data (None: never) and the
    #: whole local days since without any.
    days: int | None = None
    last_data_day: date | None = None
    days_without_data: int | None = None
    #: The link that ends the subscription without signing in (``gateway.notify.letters``).
    unsubscribe_url: str | None = None


def _address_ok(address: str) -> bool:
    # A plain addr-spec only: no display name, no whitespace or control characters (which
    # could end a mail header early), one @ with something on both sides.
    local, at, domain = address.rpartition("@")
    return (bool(at) and bool(local) and "." in domain.strip(".") and "@" not in local
            and len(address) <= ADDRESS_MAX
            and not any(c.isspace() or ord(c) < 32 or c in "<>,;\"\\" for c in address))


def check_fields(fields: SubscriptionFields) -> SubscriptionFields:
    """The fields as stored, or a ``DataError`` naming the rule broken. The API checks the
    same rules first, to answer with a 422."""
    if fields.kind not in KINDS:
        raise DataError(f"kind {fields.kind!r} is not one of {', '.join(KINDS)}", source="kind")
    if not _address_ok(fields.address):
        raise DataError(f"{fields.address!r} is not an e-mail address like name@example.org",
                        source="address")
    if not fields.channel:
        raise DataError("the channel is empty", source="channel")
    if fields.kind == "daily_above":
        if fields.days is not None:
            raise DataError("days is for no_data; daily_above takes threshold_wh",
                            source="days")
        if fields.threshold_wh is None or not 0 <= fields.threshold_wh <= MAX_THRESHOLD_WH:
            raise DataError(f"daily_above needs threshold_wh, 0 to {MAX_THRESHOLD_WH} Wh",
                            source="threshold_wh")
    else:
        if fields.threshold_wh is not None:
            raise DataError("threshold_wh is for daily_above; no_data takes days",
                            source="threshold_wh")
        if fields.days is None or not 1 <= fields.days <= MAX_NO_DATA_DAYS:
            raise DataError(f"no_data needs days, 1 to {MAX_NO_DATA_DAYS}", source="days")
    return fields


def evaluate(subscription: Subscription, daily: Sequence[DailyUsage],
             last_read_at: datetime | None, today: date, *, zone: tzinfo) -> Notice | None:
    """The first notice due for ``subscription``, or ``None``.

    ``daily`` are the series' days (any order); for ``no_data`` they must include the
    last day with data. ``last_read_at`` is the meter's last successful read (a read
    counts as data for its local day). ``today`` is the local date in ``zone``, the
    meter's timezone.
    """
    created_day = subscription.created_at.astimezone(zone).date()
    if subscription.kind == "daily_above":
        return _daily_above(subscription, daily, today, created_day)
    return _no_data(subscription, daily, last_read_at, today, created_day, zone)


def _daily_above(s: Subscription, daily: Sequence[DailyUsage], today: date,
                 created_day: date) -> Notice | None:
    if s.threshold_wh is None:
        return None
    after = date.fromisoformat(s.last_sent_key) if s.last_sent_key else date.min
    first = max(created_day, today - timedelta(days=JUDGE_DAYS), after + timedelta(days=1))
    due = sorted((d for d in daily
                  if first <= d.day < today and d.complete and d.unit is Unit.WH
                  and d.value > s.threshold_wh), key=lambda d: d.day)
    if not due:
        return None
    d = due[0]
    return Notice(subscription_id=s.id, meter_id=s.meter_id, channel=s.channel,
                  kind=s.kind, address=s.address, key=d.day.isoformat(), day=d.day,
                  value_wh=d.value, threshold_wh=s.threshold_wh)


def _no_data(s: Subscription, daily: Sequence[DailyUsage], last_read_at: datetime | None,
             today: date, created_day: date, zone: tzinfo) -> Notice | None:
    if s.days is None:
        return None
    seen = [d.day for d in daily if d.present > 0 and d.day <= today]
    if last_read_at is not None:
        seen.append(last_read_at.astimezone(zone).date())
    last = max(seen, default=None)
    # A meter that never sent data is counted from the day before the subscription.
    since = last if last is not None else created_day - timedelta(days=1)
    without = (today - since).days - 1  # whole days strictly between ``since`` and today
    if without < s.days:
        return None
    key = f"no_data:{last.isoformat() if last is not None else 'never'}"
    if key == s.last_sent_key:
        return None
    return Notice(subscription_id=s.id, meter_id=s.meter_id, channel=s.channel,
                  kind=s.kind, address=s.address, key=key, days=s.days, last_data_day=last,
                  days_without_data=without)


def kwh(wh: int) -> str:
    """Wh as kWh, exact (three decimals, no float on the way)."""
    return f"{Decimal(wh).scaleb(-3):.3f}"


def describe(notice: Notice) -> tuple[str, str]:
    """The notice as a subject line and a plain-text body."""
    if notice.kind == "daily_above":
        assert notice.day is not None and notice.value_wh is not None
        assert notice.threshold_wh is not None
        subject = f"Meter {notice.meter_id}: usage on {notice.day} above your threshold"
        body = (f"Meter: {notice.meter_id} (channel {notice.channel})\n"
                f"Day: {notice.day}\n"
                f"Usage: {kwh(notice.value_wh)} kWh\n"
                f"Threshold: {kwh(notice.threshold_wh)} kWh\n")
    else:
        last = "never" if notice.last_data_day is None else notice.last_data_day.isoformat()
        subject = f"Meter {notice.meter_id}: no data for {notice.days_without_data} days"
        body = (f"Meter: {notice.meter_id} (channel {notice.channel})\n"
                f"Days without data: {notice.days_without_data} "
                f"(you asked to be told after {notice.days})\n"
                f"Last day with data: {last}\n")
    return subject, body + "\nYou receive this because a notification is set on this meter.\n"
