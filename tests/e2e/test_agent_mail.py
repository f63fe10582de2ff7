"""The running gateway with `[api] customers = true` and `[notify]`: the portal mails a
password-reset token through the configured SMTP server (a real one, aiosmtpd), with
the `public_url` in it, and the token sets the new password over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.agent_run import running_agent
from tests.notify.smtp_server import smtp_server

LOGIN = {"email": "pat@example.org", "password": "a long enough password"}


async def test_a_password_reset_goes_out_through_notify(tmp_path: Path) -> None:
    async with smtp_server() as inbox:
        config = tmp_path / "gateway.toml"
        config.write_text("\n".join([
            "[gateway]", 'data_dir = "data"', 'timezone = "America/Chicago"',
            "[api]", 'host = "127.0.0.1"', "port = 0", "customers = true",
            "[notify]", 'smtp_host = "127.0.0.1"', f"smtp_port = {inbox.port}",
            'sender = "gw@example.org"', "starttls = false",
            'public_url = "https://portal.example.org"',
            "[[meters]]", 'meter_id = "HOME-1"', 'protocol = "manual"', "max_power_w = 20000",
        ]) + "\n")
        async with running_agent(config) as agent, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{agent.api_port}") as http:
            assert (await http.post("/api/v1/customers", json=LOGIN)).status_code == 201
            r = await http.post("/api/v1/password-resets", json={"email": LOGIN["email"]})
            assert r.status_code == 202, r.text
            async with asyncio.timeout(5):  # the mail goes out after the reply
                while not inbox.messages:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            [msg] = inbox.messages
            body = msg.get_payload(decode=True)
            assert isinstance(body, bytes)
            text = body.decode()
            assert "https://portal.example.org/api/v1/password-resets/confirm" in text
            token = text.split("Your reset token: ")[1].split()[0]
            new = "an even longer new password"
            r = await http.post("/api/v1/password-resets/confirm",
                                json={"token": token, "password": new})
            assert r.status_code == 204, r.text
            r = await http.post("/api/v1/sessions", json={**LOGIN, "password": new})
            assert r.status_code == 201


async def test_without_notify_the_reset_names_the_section(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", 'data_dir = "data"', "[api]", 'host = "127.0.0.1"', "port = 0",
        "customers = true",
    ]) + "\n")
    async with running_agent(config) as agent, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{agent.api_port}") as http:
        r = await http.post("/api/v1/password-resets", json={"email": LOGIN["email"]})
        assert r.status_code == 503 and "[notify]" in r.json()["detail"]
