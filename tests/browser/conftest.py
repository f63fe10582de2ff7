"""A live portal (uvicorn + a real SqliteStore) and Debian's chromium driven by Playwright.

The server runs in its own thread and event loop, where the store is opened, seeded and
served; tests reach that loop through ``PortalServer.call`` to write more data while
the page is open.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import uvicorn

from gateway.accounts import BillingAccount
from gateway.api import create_app
from gateway.model import IntervalReading, MeterStatus, Quality, Unit
from gateway.notify.letters import MailOut
from gateway.notify.smtp import SmtpNotifier
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from gateway.validation.daily import DailyLimits
from tests.notify.smtp_server import Inbox, smtp_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CHANNEL = "1.0.1.8.0.255"
T = TypeVar("T")


@dataclass(frozen=True)
class MeterSeed:
    """A meter's synthetic history, by days back from its local today (0 = today)."""

    meter_id: str
    timezone: str
    base_wh: int
    days_back: frozenset[int]
    estimated: frozenset[int] = frozenset()
    questionable: frozenset[int] = frozenset()
    #: Days back that hold only their first ten hours (an incomplete day).
    partial: frozenset[int] = frozenset({0})
    today: date = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "today", datetime.now(ZoneInfo(self.timezone)).date())

    def day(self, back: int) -> date:
        return self.today - timedelta(days=back)

    def dates(self, backs: frozenset[int]) -> set[str]:
        return {self.day(b).isoformat() for b in backs}

    def intervals(self, back: int) -> list[IntervalReading]:
        tz = ZoneInfo(self.timezone)
        day = self.day(back)
        nxt = day + timedelta(days=1)
        start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
        out: list[IntervalReading] = []
        i = 0
        while start < end and not (back in self.partial and i >= 40):
            quality = Quality.VALID
            if back in self.estimated and i in (30, 31, 32):
                quality = Quality.ESTIMATED_LINEAR
            if back in self.questionable and i == 50:
                quality = Quality.QUESTIONABLE
            out.append(IntervalReading(
                meter_id=self.meter_id, channel=CHANNEL, start=start, length_s=900,
                value=self.base_wh + (back * 53 + i * 17) % 300, unit=Unit.WH, quality=quality,
            ))
            start += timedelta(minutes=15)
            i += 1
        return out

    def total_wh(self, backs: frozenset[int]) -> int:
        return sum(iv.value for b in backs for iv in self.intervals(b))


# Two meters with readings (one with gaps), and one registered but never read.
METER_A = MeterSeed(
    meter_id="M-1001", timezone="America/Chicago", base_wh=180,
    days_back=frozenset(range(30)), estimated=frozenset({3, 11}),
    questionable=frozenset({7}),
)
METER_B = MeterSeed(
    meter_id="M-2002", timezone="Europe/Kyiv", base_wh=420,
    days_back=frozenset(range(30)) - {5, 6, 14, 22, 23}, estimated=frozenset({2}),
    questionable=frozenset({20, 21}),
)
METER_EMPTY = MeterSeed(
    meter_id="M-3003", timezone="America/Chicago", base_wh=0, days_back=frozenset(),
)
SEEDS = (METER_A, METER_B, METER_EMPTY)


@dataclass(frozen=True)
class TwoRateSeed:
    """A two-rate meter's days back 1-10 and the first ten hours of today: day rate
    (tariff 1) from 07:00 to 23:00 local time, night rate (tariff 2) otherwise, and the
    total register; one day of three times the usage, above its daily high limit."""

    meter_id: str = "M-5005"
    timezone: str = "America/Chicago"
    heavy_back: int = 4
    daily_high_wh: int = 20_000
    channels: tuple[str, str, str] = ("1.0.1.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255")

    @property
    def today(self) -> date:
        return datetime.now(ZoneInfo(self.timezone)).date()

    def day(self, back: int) -> date:
        return self.today - timedelta(days=back)

    def usage(self, back: int, i: int) -> int:
        wh = 90 + (back * 31 + i * 13) % 160
        return 3 * wh if back == self.heavy_back else wh

    def intervals(self, back: int) -> list[IntervalReading]:
        tz = ZoneInfo(self.timezone)
        day = self.day(back)
        nxt = day + timedelta(days=1)
        start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
        out: list[IntervalReading] = []
        i = 0
        while start < end and not (back == 0 and i >= 40):
            tariff = 1 if 7 <= start.astimezone(tz).hour < 23 else 2
            wh = self.usage(back, i)
            for k, channel in enumerate(self.channels):
                value = wh if k in (0, tariff) else 0
                out.append(IntervalReading(meter_id=self.meter_id, channel=channel,
                                           start=start, length_s=900, value=value,
                                           unit=Unit.WH))
            start += timedelta(minutes=15)
            i += 1
        return out

    def total_wh(self, back: int, tariff: int = 0) -> int:
        channel = self.channels[tariff]
        return sum(iv.value for iv in self.intervals(back) if iv.channel == channel)


TWO_RATE = TwoRateSeed()


async def seed_two_rate(store: SqliteStore, seed: TwoRateSeed) -> None:
    for channel in seed.channels:
        await store.register_series(SeriesInfo(
            meter_id=seed.meter_id, channel=channel, unit=Unit.WH, interval_s=900,
            timezone=seed.timezone))
    await store.write_intervals([iv for back in range(11) for iv in seed.intervals(back)])
    await store.set_meter_status(MeterStatus(
        meter_id=seed.meter_id, timezone=seed.timezone, status="ok",
        last_read_at=datetime.now(UTC), protocol="modbus", profile="demo_two_rate"))


async def seed(store: SqliteStore, seeds: tuple[MeterSeed, ...]) -> None:
    for s in seeds:
        await store.register_series(SeriesInfo(
            meter_id=s.meter_id, channel=CHANNEL, unit=Unit.WH, interval_s=900,
            timezone=s.timezone,
        ))
        batch = [iv for back in sorted(s.days_back) for iv in s.intervals(back)]
        await store.write_intervals(batch)
        await store.set_meter_status(MeterStatus(
            meter_id=s.meter_id, timezone=s.timezone,
            status="ok" if s.days_back else "unknown",
            last_read_at=datetime.now(UTC) if s.days_back else None,
            protocol="modbus", profile="eastron-sdm630",
        ))


class _Server(uvicorn.Server):
    """Says when it listens, so the fixture waits on an event rather than polling."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready_event = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready_event.set()


#: The operator token of the portal with customer sign-in on.
OPERATOR_TOKEN = "operator-token-for-the-browser-tests"


@dataclass(frozen=True)
class AccountSeed:
    number: str
    meter_id: str
    valid_from: date
    valid_to: date | None
    payment: str  # the last payment, as printed on the bill

    def row(self) -> BillingAccount:
        cents = int(self.payment.replace(".", ""))
        return BillingAccount(self.number, self.meter_id, self.valid_from, self.valid_to, cents)


# With customer sign-in on: M-1001's current occupant moved in 20 days ago (the previous
# one's account ended then); the two-rate M-5005 and M-2002 have accounts of their own.
ACCOUNTS = (
    AccountSeed("ACC-1001-B", METER_A.meter_id, METER_A.day(20), None, "42.17"),
    AccountSeed("ACC-1001-A", METER_A.meter_id, METER_A.day(400), METER_A.day(20), "18.00"),
    AccountSeed("ACC-5005", TWO_RATE.meter_id, TWO_RATE.day(40), None, "77.05"),
    AccountSeed("ACC-2002", METER_B.meter_id, METER_B.day(90), None, "31.40"),
)


class PortalServer:
    """uvicorn serving ``create_app`` on a free loopback port, in a thread of its own;
    ``customers``: with customer sign-in on (the store holds ``ACCOUNTS``)."""

    def __init__(self, db: Path, *, customers: bool = False) -> None:
        self.db = db
        self.customers = customers
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="portal", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.store: SqliteStore | None = None
        self.inbox: Inbox | None = None  # the mails the portal sent (customers on)
        self._server: _Server | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("portal server did not start within 20 s")
        if self._failed is not None or self._server is None or not self._server.started:
            raise RuntimeError("portal server failed to start") from self._failed

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(20)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (where the store lives) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._failed = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.store = SqliteStore(self.db)
        await self.store.open()
        stack = AsyncExitStack()
        try:
            await seed(self.store, SEEDS)
            await seed_two_rate(self.store, TWO_RATE)
            mail = None
            if self.customers:
                await self.store.put_accounts([a.row() for a in ACCOUNTS])
                self.inbox = await stack.enter_async_context(smtp_server())
                mail = MailOut(SmtpNotifier("127.0.0.1", self.inbox.port, "portal@example.org",
                                            starttls=False, timeout_s=3), self.base_url)
            app = create_app(
                self.store, mail=mail, daily_limits={
                    TWO_RATE.meter_id: DailyLimits(high_wh=TWO_RATE.daily_high_wh)},
                accounts=self.store if self.customers else None,
                operator_token=OPERATOR_TOKEN if self.customers else None)
            config = uvicorn.Config(app, log_level="warning", lifespan="off")
            self._server = _Server(config, self._ready)
            await self._server.serve(sockets=[self._sock])
        finally:
            await stack.aclose()
            await self.store.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    server = PortalServer(tmp_path_factory.mktemp("portal") / "gateway.db")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def customer_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    server = PortalServer(tmp_path_factory.mktemp("customers") / "gateway.db", customers=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if os.environ.get("AMI_SKIP_BROWSER") == "1":
        pytest.skip("browser tests skipped: AMI_SKIP_BROWSER=1")
    hint = "install Debian's chromium (apt-get install chromium), or set AMI_SKIP_BROWSER=1"
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        pytest.fail(f"the playwright package is missing ({exc}); pip install playwright, "
                    "or set AMI_SKIP_BROWSER=1", pytrace=False)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need {CHROMIUM}, which is missing: {hint}", pytrace=False)
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            pytest.fail(f"could not start {CHROMIUM}: {exc}\n{hint}", pytrace=False)
        try:
            yield launched
        finally:
            launched.close()


def _open_page(browser: Browser, answered: tuple[int, ...] = ()) -> Iterator[Page]:
    """A page that fails its test on any script error or console error; ``answered``:
    HTTP statuses the test provokes on purpose (the browser logs each failed fetch)."""
    context = browser.new_context(viewport={"width": 1200, "height": 860}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    expected = tuple(f"the server responded with a status of {code} " for code in answered)

    def on_console(msg: Any) -> None:
        if msg.type == "error" and not any(e in msg.text for e in expected):
            errors.append(msg.text)

    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", on_console)
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"the page logged errors: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _open_page(browser)


@pytest.fixture
def customer_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """For the portal with sign-in: 401 (not signed in, wrong password), 404 (no account
    matches) and 409 (a login that exists) are answers the tests ask for; a test marked
    ``answers(code, ...)`` provokes more."""
    more = request.node.get_closest_marker("answers")
    yield from _open_page(browser, (401, 404, 409, *(more.args if more else ())))
