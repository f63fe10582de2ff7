"""The [ingest] section: defaults, problems named by key with their fix, and the CLI
refusing a target or a password it cannot use before it connects anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.ingest.central_run import ingest_password, link_options
from gateway.settings import ConfigInvalid, load_config

ROOT = Path(__file__).resolve().parents[1]


def config(tmp: Path, ingest: str, extra: str = "") -> Path:
    path = tmp / "central.toml"
    path.write_text(f"[ingest]\n{ingest}\n{extra}")
    return path


def test_defaults_give_a_stable_client_id_and_the_shared_subscription(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, ""))
    opts = link_options(cfg, 3)
    assert (opts.client_id, opts.subscription, opts.session_expiry_s, opts.port) == (
        "ingest-3", "$share/ingest/ami/v1/+/intervals", 600, 1883)
    assert opts.password is None and not opts.tls


def test_password_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = load_config(config(tmp_path, 'password_file = "pw"\nshare_group = "g1"'))
    assert ingest_password(cfg) == "s3cret"
    assert link_options(cfg, 0).subscription == "$share/g1/ami/v1/+/intervals"


@pytest.mark.parametrize(("ingest", "key", "fix"), [
    ('password_env = "A"\npassword_file = "b"', "ingest.password_file", "keep one"),
    ('ca_file = "ca.pem"', "ingest.tls", "tls = true"),
    ('share_group = "a/b"', "ingest.share_group", "letters"),
    ("batch_ms = -1", "ingest.batch_ms", "larger"),
    ('password = "x"', "ingest.password", "remove"),
])
def test_problems_name_the_key_and_the_fix(tmp_path: Path, ingest: str, key: str,
                                           fix: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        load_config(config(tmp_path, ingest))
    (problem,) = caught.value.problems
    assert problem.key == key and fix in problem.fix, problem


def test_an_unset_password_variable_is_named(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, 'password_env = "AMI_TEST_UNSET_PW"'))
    with pytest.raises(ConfigError, match="AMI_TEST_UNSET_PW"):
        ingest_password(cfg)


def test_cli_refuses_a_target_that_is_no_influxdb_sink(tmp_path: Path) -> None:
    path = config(tmp_path, 'target = "warehouse"\nport = 1', '[gateway]\ndata_dir = "d"\n')
    run = subprocess.run([sys.executable, "-m", "gateway", "ingest", "--config", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run.stderr
    assert "ingest.target" in run.stderr and "warehouse" in run.stderr
