"""Customer accounts: what a login is, how its secrets are kept, and which days of a
meter it may see. Pure logic; the tables live in ``gateway.store.accounts`` and the
routes in ``gateway.api.customers``.

- A *billing account* comes from the utility: an account number that held a meter from
  ``valid_from`` (inclusive) to ``valid_to`` (exclusive, open while it lasts), with the
  amount of its last payment (the proof a customer gives to link it).
- A *login* (e-mail and password) links any number of billing accounts.
- A login sees a meter only over the windows of its linked accounts on that meter, so
  a new occupant never reads the previous occupant's days.

Passwords are hashed with scrypt and a per-login salt; session tokens are random and
only their SHA-256 is stored, so a copy of the database holds no usable secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.errors import DataError

__all__ = [
    "CONFIRM_MAILS", "CONFIRM_TTL", "CONFIRM_WINDOW", "LINK_TRIES", "LINK_WINDOW",
    "PASSWORD_MIN", "RESET_MAILS", "RESET_TTL", "RESET_WINDOW", "SESSION_TTL", "TOUCH_EVERY",
    "BillingAccount", "Coverage", "LiveSession",
    "Window", "cents", "coverage_of_days", "coverage_of_instants", "hash_password", "merge",
    "new_token", "token_hash", "verify_password", "within",
]

#: A session lasts this long from sign-in; then the customer signs in again.
SESSION_TTL = timedelta(hours=12)
#: Linking tries per login and per account number within LINK_WINDOW.
LINK_TRIES = 5
LINK_WINDOW = timedelta(minutes=15)
PASSWORD_MIN = 10
#: A session's last use is written at most this often (a write per request would not be
#: cheap), so ``last_used_at`` is that exact.
TOUCH_EVERY = timedelta(minutes=5)
#: An address-confirmation link is good this long, once; at most CONFIRM_MAILS of them
#: go to one address within CONFIRM_WINDOW (whoever asks), so they cannot flood it.
CONFIRM_TTL = timedelta(hours=48)
CONFIRM_MAILS = 3
CONFIRM_WINDOW = timedelta(days=1)
#: A password-reset token is good this long, once; at most RESET_MAILS per address
#: within RESET_WINDOW.
RESET_TTL = timedelta(minutes=30)
RESET_MAILS = 3
RESET_WINDOW = timedelta(hours=1)
PASSWORD_MAX = 256

# scrypt cost: 16 MiB and ~50 ms per hash on a small server.
_N, _R, _P, _LEN = 2**14, 8, 1, 32


@dataclass(frozen=True)
class BillingAccount:
    account_number: str
    meter_id: str
    valid_from: date
    valid_to: date | None  # exclusive; None while the account holds the meter
    last_payment_cents: int

    def __post_init__(self) -> None:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise DataError(f"valid_to ({self.valid_to}) is not after valid_from "
                            f"({self.valid_from})", source="valid_to")
        if self.last_payment_cents < 0:
            raise DataError("a payment is not negative", source="last_payment_cents")


@dataclass(frozen=True)
class LiveSession:
    """A signed-in session as its login may see it (never its token)."""

    id: int
    customer_id: int
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, order=True)
class Window:
    """Local days ``[first, end)`` of a meter; ``end`` None: open."""

    first: date
    end: date | None


def merge(windows: list[Window]) -> list[Window]:
    """Touching or overlapping windows joined, by first day."""
    out: list[Window] = []
    for w in sorted(windows, key=lambda w: w.first):
        if out and (out[-1].end is None or w.first <= out[-1].end):
            last = out[-1]
            end = None if last.end is None or w.end is None else max(last.end, w.end)
            out[-1] = Window(last.first, end)
        else:
            out.append(w)
    return out


#: How much of a range the windows cover.
Coverage = Literal["all", "some", "none"]


def _cover(windows: list[Window], lo: date, hi_excl: date) -> Coverage:
    touched = False
    for w in merge(windows):
        end = w.end or date.max
        if w.first <= lo and hi_excl <= end:
            return "all"
        if w.first < hi_excl and lo < end:
            touched = True
    return "some" if touched else "none"


def coverage_of_days(windows: list[Window], first: date, last: date) -> Coverage:
    """Coverage of the local days ``first`` to ``last`` inclusive."""
    try:
        return _cover(windows, first, last + timedelta(days=1))
    except OverflowError:
        return _cover(windows, first, date.max)


def coverage_of_instants(windows: list[Window], tz: str, start: datetime,
                         end: datetime) -> Coverage:
    """Coverage of the instants ``[start, end)`` by the windows' local days in ``tz``."""
    zone = ZoneInfo(tz)
    lo = start.astimezone(zone).date()
    last_instant = end - timedelta(microseconds=1) if end > start else start
    hi = last_instant.astimezone(zone).date()
    return coverage_of_days(windows, lo, hi)


def within(windows: list[Window], first: date, last: date) -> bool:
    return coverage_of_days(windows, first, last) == "all"


def cents(amount: str) -> int:
    """An amount as written on a bill ("42.17", "42") in cents; DataError when it is not."""
    try:
        value = Decimal(amount.strip().removeprefix("$"))
    except InvalidOperation:
        raise DataError(f"{amount!r} is not an amount", source="last_payment") from None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise DataError(f"{amount!r} is not an amount in cents", source="last_payment")
    return int(value * 100)


def hash_password(password: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """``(salt, digest)``; a new random salt unless given."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LEN)
    return salt, digest


def verify_password(password: str, salt: bytes, digest: bytes) -> bool:
    return hmac.compare_digest(hash_password(password, salt)[1], digest)


def new_token() -> tuple[str, bytes]:
    """A bearer token for the customer and the hash the store keeps."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def ms(at: datetime) -> int:
    return int(at.astimezone(UTC).timestamp() * 1000)
