"""Config errors name the file, the key path and the fix; all problems come at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import ConfigInvalid, load_config

GOOD = """
[gateway]
timezone = "America/Chicago"
[[meters]]
meter_id = "M1"
profile = "eastron_sdm630"
host = "127.0.0.1"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_example_config_loads() -> None:
    cfg = load_config(Path("config/gateway.example.toml"))
    assert [m.meter_id for m in cfg.settings.meters] == ["ACME-0001", "ACME-0002", "ACME-0101"]
    assert cfg.settings.timezone_of(cfg.settings.meters[1]) == "America/Denver"
    assert cfg.store_path == cfg.data_dir / "store.db"


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.settings.meters[0].port == 502


def test_every_problem_is_reported_with_file_key_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, """
[gateway]
timezone = "Mars/Olympus"
interval_s = 700
[[meters]]
meter_id = "M1"
profile = "eastron_sdm630"
host = "127.0.0.1"
unit_id = 300
pol_interval_s = 10
[[meters]]
meter_id = "M1"
profile = "eastron_sdm630"
host = "127.0.0.1"
""")
    with pytest.raises(ConfigInvalid) as err:
        load_config(path)
    problems = {p.key: p for p in err.value.problems}
    assert set(problems) == {
        "gateway.timezone", "gateway.interval_s", "meters[0](meter_id=M1).unit_id",
        "meters[0](meter_id=M1).pol_interval_s", "meters",
    }
    for p in problems.values():
        assert p.file == str(path)
        assert p.fix
    assert "Mars/Olympus" in problems["gateway.timezone"].reason
    assert "appears twice" in problems["meters"].reason
    assert "spelling" in problems["meters[0](meter_id=M1).pol_interval_s"].fix
    assert str(path) in str(err.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_config(write(tmp_path, "[gateway\n"))
    assert err.value.fix


def test_the_operator_token_comes_from_env_or_file_never_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_config(write(tmp_path, GOOD)).operator_token() is None
    cfg = load_config(write(tmp_path, GOOD + '[api]\noperator_token_env = "AMI_TEST_TOKEN"\n'))
    monkeypatch.delenv("AMI_TEST_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="AMI_TEST_TOKEN") as err:
        cfg.operator_token()
    assert err.value.key == "api.operator_token_env" and err.value.fix
    monkeypatch.setenv("AMI_TEST_TOKEN", " tok-123 \n")
    assert cfg.operator_token() == "tok-123"
    (tmp_path / "token").write_text("from-a-file\n")
    cfg = load_config(write(tmp_path, GOOD + '[api]\noperator_token_file = "token"\n'))
    assert cfg.operator_token() == "from-a-file"
    with pytest.raises(ConfigInvalid):  # a token written into the config is refused
        load_config(write(tmp_path, GOOD + '[api]\noperator_token = "inline"\n'))
