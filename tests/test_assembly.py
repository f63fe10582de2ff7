"""Cross-checks between a config and the device profiles, and the demo's folder rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.assembly import assemble
from gateway.demo import MARKER, _prepare
from gateway.errors import ConfigError
from gateway.settings import ConfigInvalid, load_config


def test_a_poll_slower_than_the_gap_limit_is_a_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[validation]\nmax_gap_s = 900\n[[meters]]\nmeter_id = "M1"\n'
                   'profile = "eastron_sdm120"\nhost = "127.0.0.1"\npoll_interval_s = 3600\n')
    with pytest.raises(ConfigInvalid) as err:
        assemble(load_config(cfg))
    [problem] = err.value.problems
    assert problem.key == "meters[0](meter_id=M1).poll_interval_s"
    assert "every interval would be an estimate" in problem.reason and problem.fix


def test_the_demo_never_clears_a_folder_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "site"
    precious.mkdir()
    (precious / "store.db").write_text("billing data")
    with pytest.raises(ConfigError, match="not made by the demo"):
        _prepare(precious)
    assert (precious / "store.db").read_text() == "billing data"
    fresh = tmp_path / "new"
    _prepare(fresh)
    assert (fresh / MARKER).exists() and (fresh / "devices" / "demo_pulse16.toml").exists()
    _prepare(fresh)  # its own folder: replaced again without complaint
