"""The demo's customer side: billing accounts for its meters, an operator token in a file,
and a login that holds three of the meters, so the page opens on sign-in as a co-op's
portal does. The login's password is made at each start and shown on the demo's screen
(and in ``demo-data/demo-login.txt``); it is never written to the config or the logs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from gateway.accounts import BillingAccount, hash_password
from gateway.store.sqlite import SqliteStore

__all__ = ["DEMO_LOGIN", "UNLINKED", "DemoLogin", "api_config", "seed_customers"]

DEMO_LOGIN = "demo@example.org"
#: Account number, meter and last payment (cents) of each demo account.
_ACCOUNTS = (
    ("1001-0001", "DEMO-1001", 4217),
    ("3001-0001", "DEMO-3001", 6890),
    ("5001-0001", "DEMO-5001", 5312),
    ("2001-0001", "DEMO-2001", 6320),
)
#: The account left for the visitor to link from the page: number and last payment.
UNLINKED = ("2001-0001", "63.20")
TOKEN_FILE = "keys/operator-token"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    unlinked_account: str
    unlinked_payment: str


def api_config() -> list[str]:
    """The ``[api]`` lines that turn customer sign-in on."""
    return ["customers = true  # the page asks customers to sign in",
            f'operator_token_file = "{TOKEN_FILE}"  # made at each start']


async def seed_customers(data_dir: Path, store_path: Path, first_day: date) -> DemoLogin:
    """The accounts (held since a year before the demo's history, so the page shows all
    of it and whole months), the login, and the operator token file."""
    token = data_dir / TOKEN_FILE
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text(secrets.token_urlsafe(32) + "\n")
    token.chmod(0o600)
    password = secrets.token_urlsafe(9)
    now = datetime.now(UTC)
    store = SqliteStore(store_path)
    await store.open()
    try:
        since = date(first_day.year - 1, first_day.month, 1)
        await store.put_accounts([BillingAccount(number, meter, since, None, cents)
                                  for number, meter, cents in _ACCOUNTS])
        salt, digest = hash_password(password)
        customer = await store.add_customer(DEMO_LOGIN, salt, digest, at=now)
        assert customer is not None, "the demo's store is made new at each start"
        for number, _, cents in _ACCOUNTS:
            if number != UNLINKED[0]:
                await store.link(customer, number, cents, at=now)
    finally:
        await store.close()
    login = DemoLogin(DEMO_LOGIN, password, *UNLINKED)
    note = data_dir / "demo-login.txt"
    note.write_text(f"e-mail {login.email}\npassword {login.password}\n"
                    f"account to link: {login.unlinked_account}, last payment "
                    f"{login.unlinked_payment}\n")
    note.chmod(0o600)
    return login
