"""The running gateway with `[api] customers = true`: the operator loads billing
accounts, a customer signs up, links an account and sees that meter only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.agent_run import running_agent


async def test_a_customer_sees_only_the_linked_meter(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPERATOR_TOKEN", "operator-token-0123456789abcdef")
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", 'data_dir = "data"', 'timezone = "America/Chicago"',
        "[api]", 'host = "127.0.0.1"', "port = 0", "customers = true",
        'operator_token_env = "TEST_OPERATOR_TOKEN"',
        *[line for m in ("HOME-1", "HOME-2") for line in (
            "[[meters]]", f'meter_id = "{m}"', 'protocol = "manual"', "max_power_w = 20000")],
    ]) + "\n")
    async with running_agent(config) as agent:
        operator = {"Authorization": "Bearer operator-token-0123456789abcdef"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as http:
            loaded = await http.post("/api/v1/accounts", headers=operator, json={"accounts": [
                {"account_number": "7001", "meter_id": "HOME-1", "valid_from": "2026-01-01",
                 "last_payment": "61.20"},
                {"account_number": "7002", "meter_id": "HOME-2", "valid_from": "2026-01-01",
                 "last_payment": "12.00"}]})
            assert loaded.status_code in (200, 201), loaded.text
            login = {"email": "pat@example.org", "password": "a long enough password"}
            assert (await http.post("/api/v1/customers", json=login)).status_code in (200, 201)
            session = (await http.post("/api/v1/sessions", json=login)).json()
            me = {"Authorization": f"Bearer {session['token']}"}
            linked = await http.post("/api/v1/me/accounts", headers=me,
                                     json={"account_number": "7001", "last_payment": "61.20"})
            assert linked.status_code in (200, 201), linked.text
            meters = (await http.get("/api/v1/meters", headers=me)).json()["meters"]
            assert [m["meter_id"] for m in meters] == ["HOME-1"]
            other = await http.get("/api/v1/meters/HOME-2/daily", headers=me,
                                   params={"from": "2026-11-01", "to": "2026-11-02"})
            assert other.status_code == 404
            assert (await http.get("/api/v1/meters")).status_code == 401
            everything = (await http.get("/api/v1/meters", headers=operator)).json()["meters"]
            assert {m["meter_id"] for m in everything} == {"HOME-1", "HOME-2"}
