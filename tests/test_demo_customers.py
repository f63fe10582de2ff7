"""The demo's customer side: its login signs in and holds three meters, the fourth account
is left to link with the payment shown, and nothing secret lands in the config."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import httpx

from gateway.api import create_app
from gateway.demo_customers import DEMO_LOGIN, api_config, seed_customers
from gateway.model import MeterStatus
from gateway.store.sqlite import SqliteStore


async def test_the_demo_login_holds_its_meters_and_can_link_the_fourth(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    login = await seed_customers(tmp_path, db, date(2026, 11, 2))
    assert login.email == DEMO_LOGIN and len(login.password) >= 12
    for secret in (tmp_path / "keys/operator-token", tmp_path / "demo-login.txt"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert login.password in (tmp_path / "demo-login.txt").read_text()
    assert not any(login.password in line for line in api_config())

    store = SqliteStore(db)
    await store.open()
    try:
        for meter in ("DEMO-1001", "DEMO-2001", "DEMO-3001", "DEMO-5001"):
            await store.set_meter_status(MeterStatus(meter_id=meter, timezone="America/Chicago",
                                                     status="ok"))
        app = create_app(store, accounts=store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                     base_url="http://demo") as client:
            wrong = await client.post("/api/v1/sessions", json={
                "email": DEMO_LOGIN, "password": login.password + "x"})
            assert wrong.status_code == 401
            signed = await client.post("/api/v1/sessions", json={
                "email": DEMO_LOGIN, "password": login.password})
            assert signed.status_code == 201
            client.headers["Authorization"] = f"Bearer {signed.json()['token']}"
            meters = (await client.get("/api/v1/meters")).json()["meters"]
            assert [m["meter_id"] for m in meters] == ["DEMO-1001", "DEMO-3001", "DEMO-5001"]
            linked = await client.post("/api/v1/me/accounts", json={
                "account_number": login.unlinked_account,
                "last_payment": login.unlinked_payment})
            assert linked.status_code == 201
            held = {a["meter_id"]: a["valid_from"] for a in linked.json()["accounts"]}
            # Held since a year before the demo's history: every day of it and whole months.
            assert held == dict.fromkeys(
                ("DEMO-1001", "DEMO-2001", "DEMO-3001", "DEMO-5001"), "2025-11-01")
    finally:
        await store.close()
