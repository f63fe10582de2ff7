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


def test_rules_come_from_the_gateway_and_a_meter_overrides_key_by_key(tmp_path: Path) -> None:
    from decimal import Decimal

    cfg = tmp_path / "site.toml"
    cfg.write_text(
        "[validation.rules]\nzero_run_intervals = 8\nspike_factor = 3.5\n"
        '[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm120"\nhost = "127.0.0.1"\n'
        '[[meters]]\nmeter_id = "M2"\nprofile = "eastron_sdm120"\nhost = "127.0.0.1"\n'
        "[meters.rules]\nzero_run_intervals = 96\ndemand_high_w = 12000\n"
        "frozen_register = true\n")
    m1, m2 = assemble(load_config(cfg)).meters
    assert {s.vee.zero_run_intervals for s in m1.series} == {8}
    vee = m2.series[0].vee
    assert (vee.zero_run_intervals, vee.demand_high_w, vee.spike_factor, vee.frozen_register) \
        == (96, Decimal(12000), Decimal("3.5"), True)


def test_a_bad_rule_setting_names_its_key(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm120"\n'
                   'host = "127.0.0.1"\n[meters.rules]\nspike_window = 8\n')
    with pytest.raises(ConfigInvalid) as err:
        assemble(load_config(cfg))
    [problem] = err.value.problems
    assert problem.key.startswith("meters[0](meter_id=M1).rules.spike")
    assert "spike_factor" in str(problem) and problem.fix
    bad = tmp_path / "bad.toml"
    bad.write_text("[validation.rules]\nspike_factor = 0.5\n")
    with pytest.raises(ConfigInvalid) as err2:
        load_config(bad)
    assert err2.value.problems[0].key == "validation.rules.spike_factor"


def test_daily_limits_merge_like_the_other_rules_and_stay_out_of_the_interval_rules(
    tmp_path: Path,
) -> None:
    from decimal import Decimal

    from gateway.validation.daily import DailyLimits

    cfg = tmp_path / "site.toml"
    cfg.write_text(
        "[validation.rules]\ndaily_high_wh = 60000\nzero_run_intervals = 8\n"
        '[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm120"\nhost = "127.0.0.1"\n'
        '[[meters]]\nmeter_id = "M2"\nprofile = "eastron_sdm120"\nhost = "127.0.0.1"\n'
        '[meters.rules]\ndaily_low_wh = 500\ndaily_history_factor = "2.5"\n'
        "daily_history_days = 14\n")
    assembly = assemble(load_config(cfg))
    assert assembly.daily_limits() == {
        "M1": DailyLimits(high_wh=60_000),
        "M2": DailyLimits(high_wh=60_000, low_wh=500, history_factor=Decimal("2.5"),
                          history_days=14),
    }
    assert {s.vee.zero_run_intervals for m in assembly.meters for s in m.series} == {8}


@pytest.mark.parametrize(("rules", "key"), [
    ("daily_high_wh = 500\ndaily_low_wh = 800\n", "daily_low_wh"),
    ("daily_history_days = 3\n", "daily_history_days"),
])
def test_a_bad_daily_limit_names_its_key(tmp_path: Path, rules: str, key: str) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm120"\n'
                   f'host = "127.0.0.1"\n[meters.rules]\n{rules}')
    with pytest.raises(ConfigInvalid) as err:
        assemble(load_config(cfg))
    [problem] = err.value.problems
    assert problem.key == f"meters[0](meter_id=M1).rules.{key}" and problem.fix


def test_estimation_settings_reach_every_series(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[validation]\nreference_day_after_s = 7200\nreference_day = "previous_day"\n'
                   'reference_candidates = 2\nbackfill_window_days = 10\n'
                   '[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm120"\nhost = "127.0.0.1"\n')
    series = [s for s, _ in assemble(load_config(cfg)).series()]
    assert series and all(
        (s.reference_day_after_s, s.reference_day, s.reference_candidates,
         s.backfill_window_s) == (7200, "previous_day", 2, 10 * 86_400) for s in series)
    default = tmp_path / "default.toml"
    default.write_text('[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm120"\n'
                       'host = "127.0.0.1"\n')
    assert all(s.reference_day_after_s is None
               for s, _ in assemble(load_config(default)).series())
    cfg.write_text('[validation]\nreference_day = "last_tuesday"\n')
    with pytest.raises(ConfigInvalid) as err:
        load_config(cfg)
    assert "reference_day" in str(err.value)


def test_check_reports_an_uplink_sink_whose_password_cannot_be_read(tmp_path: Path) -> None:
    from gateway.settings import ConfigInvalid, load_config

    config = tmp_path / "site.toml"
    config.write_text("\n".join([
        "[[sinks]]", 'kind = "mqtt_uplink"', 'host = "broker.example"', 'edge_id = "edge-a"',
        'password_env = "AMI_TEST_UPLINK_PASSWORD_UNSET"']) + "\n")
    with pytest.raises(ConfigInvalid) as caught:
        assemble(load_config(config))
    [problem] = caught.value.problems
    assert problem.key == "sinks[0].password_env"
    assert "AMI_TEST_UPLINK_PASSWORD_UNSET" in str(problem)
