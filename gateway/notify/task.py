"""The periodic task that judges every subscription and sends what is due.

Each run reads the subscriptions, the meters' days and last reads from the store, asks
``gateway.notify.rules.evaluate`` for the next notice of each, sends it, and only once
the notifier accepted it stores its key (``Store.notification_sent``). A notice the
notifier refused stays due and goes out on a later run; a crash between the
acceptance and the store re-sends that one notice once. A subscription's failure never
holds up the others.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import msgspec

from gateway import log
from gateway.accounts import Window, merge, new_token, within
from gateway.clock import Clock
from gateway.errors import SinkError
from gateway.model import DailyUsage
from gateway.notify.letters import UNSUBSCRIBE_PATH, link
from gateway.notify.rules import JUDGE_DAYS, Notice, Subscription, evaluate
from gateway.notify.smtp import Notifier
from gateway.store import Store

__all__ = ["MAX_PER_RUN", "Notifications"]

_log = log.get("gateway.notify")

#: Notices one subscription may send in one run (days above the threshold after an
#: outage of the gateway); the rest follow on the next runs.
MAX_PER_RUN = 10


class Owners(Protocol):
    """Who made a subscription, and the days their accounts hold a meter (the store)."""

    async def notification_owners(self, ids: list[int]) -> dict[int, int]: ...

    async def windows(self, customer_id: int, meter_id: str) -> list[Window]: ...

    async def confirmed(self, customer_id: int, addresses: list[str]) -> set[str]: ...


class Unsubscribes(Protocol):
    """Where the unsubscribe token of each notice is kept (hashed; the store)."""

    async def add_unsubscribe(self, token_hash: bytes, notification_id: int, *,
                              now: datetime) -> None: ...


class Notifications:
    """Every ``every_s`` seconds, the notices due for every subscription."""

    def __init__(self, store: Store, notifier: Notifier, clock: Clock, *,
                 every_s: float = 300.0, accounts: Owners | None = None,
                 unsubscribes: Unsubscribes | None = None,
                 public_url: str | None = None) -> None:
        self.store = store
        #: Each notice carries a fresh unsubscribe link (``gateway.notify.letters``).
        self.unsubscribes = unsubscribes
        self.public_url = public_url
        #: With customer access on: a customer's subscription only tells them about the
        #: days their accounts hold the meter (a previous occupant hears nothing of the
        #: next one's usage).
        self.accounts = accounts
        self.notifier = notifier
        self.clock = clock
        self.every_s = every_s
        #: Notices sent and failed sends since start (for the status and the tests).
        self.sent = 0
        self.failed = 0

    async def run(self) -> None:
        """Run until cancelled."""
        while True:
            await self.run_once()
            await self.clock.sleep_until(self.clock.now() + timedelta(seconds=self.every_s))

    async def run_once(self) -> int:
        """One pass over every subscription; the number of notices sent."""
        sent = 0
        for sub in await self.store.notifications():
            try:
                sent += await self._judge(sub)
            except SinkError as exc:
                self.failed += 1
                _log.warning("notice not sent; it stays due for the next run",
                             subscription=sub.id, meter_id=sub.meter_id, error=str(exc),
                             retryable=exc.retryable)
        self.sent += sent
        return sent

    async def _judge(self, sub: Subscription) -> int:
        meter = await self.store.meter(sub.meter_id)
        if meter is None:  # a meter no longer configured: nothing to judge
            return 0
        info = next((s for s in await self.store.series(sub.meter_id)
                     if s.channel == sub.channel), None)
        zone = ZoneInfo(info.timezone if info is not None else meter.timezone)
        today = self.clock.now().astimezone(zone).date()
        daily = await self._days(sub, today)
        held = await self._owner_days(sub)
        if isinstance(held, str):
            return 0  # the owner has not confirmed the address: nothing but that mail
        if held is not None:
            if not within(held, today, today):
                return 0  # the owner no longer holds the meter (or not yet)
            daily = [d for d in daily if within(held, d.day, d.day)]
        sent = 0
        while sent < MAX_PER_RUN:
            notice = evaluate(sub, daily, meter.last_read_at, today, zone=zone)
            if notice is None:
                break
            await self.notifier.send(await self._with_unsubscribe(notice))
            if not await self.store.notification_sent(sub.id, notice.key, notice.address,
                                                      at=self.clock.now()):
                break  # deleted while the notice went out
            _log.info("notice sent", subscription=sub.id, meter_id=sub.meter_id,
                      kind=sub.kind, key=notice.key)
            sub = msgspec.structs.replace(sub, last_sent_key=notice.key)
            sent += 1
        return sent

    async def _with_unsubscribe(self, notice: Notice) -> Notice:
        if self.unsubscribes is None:
            return notice
        token, hashed = new_token()
        await self.unsubscribes.add_unsubscribe(hashed, notice.subscription_id,
                                                now=self.clock.now())
        return msgspec.structs.replace(
            notice, unsubscribe_url=link(self.public_url, UNSUBSCRIBE_PATH, token))

    async def _owner_days(self, sub: Subscription) -> list[Window] | str | None:
        """The days the subscription's owner holds its meter; "pending" while the owner
        has not confirmed the address; None: no restriction (no customer access, or a
        subscription the operator made)."""
        if self.accounts is None:
            return None
        owner = (await self.accounts.notification_owners([sub.id])).get(sub.id)
        if owner is None:
            return None
        address = sub.address.casefold()
        if address not in await self.accounts.confirmed(owner, [address]):
            return "pending"
        return merge(await self.accounts.windows(owner, sub.meter_id))

    async def _days(self, sub: Subscription, today: date) -> list[DailyUsage]:
        if sub.kind == "daily_above":
            return await self.store.daily(sub.meter_id, sub.channel,
                                          today - timedelta(days=JUDGE_DAYS), today)
        span = await self.store.daily_span(sub.meter_id, sub.channel)
        if span is None:
            return []
        # The last day with data is all no_data needs.
        return await self.store.daily(sub.meter_id, sub.channel, span[1], span[1])
