"""The optional VEE rules (demand limit, spike, zero run, frozen register) and VeeConfig."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import msgspec
import pytest

from gateway.errors import ConfigError
from gateway.model import Flag, Quality, quality_of
from gateway.validation.rules import (
    DemandHighLimit,
    FrozenRegister,
    FutureTimestamp,
    IntervalRule,
    ReadingRule,
    Spike,
    StatefulRule,
    VeeState,
    ZeroRun,
)
from gateway.validation.stage import ValidationStage, VeeConfig

T = 1_767_225_600_000  # 2026-01-01T00:00Z, on every grid
Q = 900_000  # a quarter-hour in ms
NOW = T + 86_400_000


def judge(rule: IntervalRule, values: Sequence[int], *, length_s: int = 900,
          starts: Sequence[int] | None = None) -> list[int]:
    """The flags ``rule`` fires on consecutive intervals (or at ``starts``, in ms)."""
    at = starts if starts is not None else [T + i * length_s * 1000 for i in range(len(values))]
    return [rule.check(s, length_s, v, 0) for s, v in zip(at, values, strict=True)]


S = int(Flag.SPIKE)
D = int(Flag.DEMAND_HIGH)
Z = int(Flag.ZERO_RUN)


# -- demand high limit ----------------------------------------------------------------

# 4 kW: a quarter-hour may hold 1000 Wh, an hour 4000 Wh.
@pytest.mark.parametrize(("limit_w", "length_s", "value", "fired"), [
    (Decimal(4000), 900, 999, 0),
    (Decimal(4000), 900, 1000, 0),  # exactly at the limit
    (Decimal(4000), 900, 1001, D),
    (Decimal(4000), 3600, 4000, 0),
    (Decimal(4000), 3600, 4001, D),
    (Decimal("4000.5"), 3600, 4000, 0),  # 4000.5 Wh allowed: fractional limits are exact
    (Decimal("4000.5"), 3600, 4001, D),
    (Decimal(1), 900, 0, 0),
])
def test_demand_high_limit(limit_w: Decimal, length_s: int, value: int, fired: int) -> None:
    assert DemandHighLimit(limit_w).check(T, length_s, value, 0) == fired


# -- spike (consecutive-interval tolerance) -------------------------------------------

@pytest.mark.parametrize(("values", "fired"), [
    # window 3, factor 3, floor 100: mean of 200 -> spike above 600
    ([200, 200, 200, 600], [0, 0, 0, 0]),  # exactly 3 x the mean
    ([200, 200, 200, 601], [0, 0, 0, S]),
    ([200, 200, 601], [0, 0, 0]),  # the window is not full yet: no judgement
    ([1, 1, 1, 5], [0, 0, 0, 0]),  # far above the mean but below the floor
    ([0, 0, 0, 100], [0, 0, 0, 0]),  # at the floor
    ([0, 0, 0, 101], [0, 0, 0, S]),
    # a spike joins the window: a lasting change of level fires once
    ([100, 100, 100, 1000, 1000, 1000, 1000], [0, 0, 0, S, 0, 0, 0]),
    # a rising ramp fires while each step outgrows the window's mean
    ([100, 100, 100, 400, 1300, 4000], [0, 0, 0, S, S, S]),
])
def test_spike(values: list[int], fired: list[int]) -> None:
    rule = Spike(Decimal(3), window=3, floor=100)
    assert judge(rule, values) == fired


def test_spike_fractional_factor_is_exact() -> None:
    def last(values: list[int]) -> int:
        return judge(Spike(Decimal("1.5"), window=2, floor=0), values)[-1]

    assert (last([100, 100, 150]), last([100, 100, 151])) == (0, S)  # at 150 exactly
    assert (last([100, 101, 150]), last([100, 101, 151])) == (0, S)  # at 150.75


def test_spike_window_restarts_after_a_hole() -> None:
    values = [10, 10, 500, 10, 500]
    assert judge(Spike(Decimal(2), window=2, floor=0), values) == [0, 0, S, 0, 0]
    starts = [T, T + Q, T + 3 * Q, T + 4 * Q, T + 5 * Q]  # no interval at T + 2Q
    assert judge(Spike(Decimal(2), window=2, floor=0), values, starts=starts) == [0, 0, 0, 0, 0]


# -- zero run -------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "values", "fired"), [
    (3, [0, 0], [0, 0]),
    (3, [0, 0, 0, 0], [0, 0, Z, Z]),  # the Nth and every further one
    (3, [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, Z]),  # a non-zero interval ends the run
    (1, [5, 0, 0, 5], [0, Z, Z, 0]),
    (2, [7, 7], [0, 0]),
])
def test_zero_run(n: int, values: list[int], fired: list[int]) -> None:
    assert judge(ZeroRun(n), values) == fired


def test_zero_run_restarts_after_a_hole() -> None:
    starts = [T, T + Q, T + 3 * Q, T + 4 * Q]
    assert judge(ZeroRun(2), [0, 0, 0, 0], starts=starts) == [0, Z, 0, Z]


# -- frozen register ------------------------------------------------------------------

F = int(Flag.FROZEN)


@pytest.mark.parametrize(("reads", "fired"), [
    # (gateway ms, meter ms or None)
    ([(T, T), (T + Q, T + Q)], [0, 0]),
    ([(T, T), (T + Q, T)], [0, F]),  # the meter repeated its snapshot
    ([(T, T), (T + Q, T), (T + 2 * Q, T)], [0, F, F]),  # and again
    ([(T, T), (T + Q, T), (T + 2 * Q, T + 2 * Q)], [0, F, 0]),  # and recovered
    ([(T, T), (T, T)], [0, 0]),  # the same read again: gateway time did not move
    ([(T, T), (T - Q, T)], [0, 0]),  # a late read: not judged
    ([(T, None), (T + Q, None)], [0, 0]),  # no meter time: not judged
    ([(T, T), (T + Q, None), (T + 2 * Q, T)], [0, 0, F]),  # unjudged reads change nothing
    ([(T, T), (NOW + 1, T), (T + Q, T)], [0, 0, F]),  # a read from the future neither
])
def test_frozen_register(reads: list[tuple[int, int | None]], fired: list[int]) -> None:
    rule = FrozenRegister()
    assert [rule.check(at, Decimal(1), NOW, meter_at) for at, meter_at in reads] == fired


# -- state across a snapshot / restore ------------------------------------------------

def _roundtrip(state: VeeState) -> VeeState:
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=VeeState)
    assert back == state
    return back


@pytest.mark.parametrize("cut", range(0, 9))
def test_rule_state_survives_a_restart(cut: int) -> None:
    vee = VeeConfig(spike_factor=Decimal(2), spike_window=2, spike_floor_wh=0,
                    zero_run_intervals=2, frozen_register=True, demand_high_w=Decimal(8000))
    values = [100, 100, 500, 0, 0, 0, 100, 2500, 100]
    meter = [T, T + Q, T + Q, T + 3 * Q, T + 4 * Q, T + 4 * Q, T + 4 * Q, T + 7 * Q, T + 8 * Q]

    def step(stage: ValidationStage, i: int) -> tuple[int, int]:
        at = T + i * Q
        return (stage.check_reading(at, Decimal(i), NOW, meter[i]),
                stage.check_interval(at, 900, values[i], 0))

    whole = ValidationStage.from_config(vee)
    expected = [step(whole, i) for i in range(len(values))]
    # 2500 Wh in a quarter-hour is 10 kW: above the 8 kW demand limit and a spike too.
    assert expected == [(0, 0), (0, 0), (F, S), (0, 0), (0, Z), (F, Z), (F, S), (0, S | D),
                        (0, 0)]
    first = ValidationStage.from_config(vee)
    got = [step(first, i) for i in range(cut)]
    second = ValidationStage.from_config(vee, state=_roundtrip(first.snapshot()))
    got += [step(second, i) for i in range(cut, len(values))]
    assert got == expected
    assert second.snapshot() == whole.snapshot()
    third = ValidationStage.from_config(vee)  # restore() into a stage built without state
    third.restore(first.snapshot())
    assert third.snapshot() == first.snapshot()


def test_a_smaller_window_keeps_the_newest_values() -> None:
    rule = Spike(Decimal(2), window=4, floor=0)
    judge(rule, [1, 2, 3, 4])
    smaller = Spike(Decimal(2), window=2, floor=0, state=rule.save(VeeState()))
    assert smaller.save(VeeState()).spike_values == (3, 4)


# -- the stage and the config ---------------------------------------------------------

def test_all_rules_off_by_default() -> None:
    stage = ValidationStage.from_config(VeeConfig(), future_tolerance_s=10)
    assert [type(r) for r in stage.reading_rules] == [FutureTimestamp]
    assert stage.interval_rules == ()
    assert not stage.uses_meter_at
    assert stage.snapshot() == VeeState()


def test_every_rule_on() -> None:
    vee = VeeConfig(demand_high_w=Decimal(5000), spike_factor=Decimal(3),
                    zero_run_intervals=96, frozen_register=True)
    stage = ValidationStage.from_config(vee)
    assert [type(r) for r in stage.reading_rules] == [FutureTimestamp, FrozenRegister]
    assert [type(r) for r in stage.interval_rules] == [DemandHighLimit, Spike, ZeroRun]
    assert stage.uses_meter_at
    # The flag names are the audit vocabulary: which rules a value's flags point to.
    assert stage.fired(Flag.ZERO_RUN | Flag.FROZEN) == ["FrozenRegister", "ZeroRun"]
    assert stage.fired(Flag.SPIKE) == ["Spike"]
    assert stage.fired(Flag.DEMAND_HIGH) == ["DemandHighLimit"]
    stateful = [r for r in (*stage.reading_rules, *stage.interval_rules)
                if isinstance(r, StatefulRule)]
    assert [type(r) for r in stateful] == [FrozenRegister, Spike, ZeroRun]


@pytest.mark.parametrize("flag", [Flag.SPIKE, Flag.DEMAND_HIGH, Flag.ZERO_RUN, Flag.FROZEN])
def test_fired_rules_make_a_value_questionable(flag: Flag) -> None:
    assert quality_of(int(flag) | int(Flag.INTERPOLATED)) is Quality.QUESTIONABLE


@pytest.mark.parametrize(("fields", "key"), [
    ({"demand_high_w": Decimal(0)}, "demand_high_w"),
    ({"demand_high_w": Decimal(-5)}, "demand_high_w"),
    ({"demand_high_w": Decimal("NaN")}, "demand_high_w"),
    ({"demand_high_w": Decimal("Infinity")}, "demand_high_w"),
    ({"spike_factor": Decimal("0.9")}, "spike_factor"),
    ({"spike_factor": Decimal("NaN")}, "spike_factor"),
    ({"spike_factor": Decimal(3), "spike_window": 0}, "spike_window"),
    ({"spike_factor": Decimal(3), "spike_floor_wh": -1}, "spike_floor_wh"),
    ({"spike_window": 8}, "spike_factor"),  # spike keys without the rule
    ({"zero_run_intervals": 0}, "zero_run_intervals"),
])
def test_bad_config_names_key_and_fix(fields: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        VeeConfig(**fields)  # type: ignore[arg-type]
    assert info.value.key == key and info.value.fix


def test_config_decodes_and_validates() -> None:
    vee = msgspec.json.decode(b'{"spike_factor": "2.5", "zero_run_intervals": 4}',
                              type=VeeConfig)
    assert vee == VeeConfig(spike_factor=Decimal("2.5"), zero_run_intervals=4)
    with pytest.raises(ConfigError):
        msgspec.json.decode(b'{"zero_run_intervals": -1}', type=VeeConfig)


def test_rules_satisfy_their_protocols() -> None:
    reading: list[ReadingRule] = [FrozenRegister()]
    interval: list[IntervalRule] = [DemandHighLimit(Decimal(1)), Spike(Decimal(2)), ZeroRun(3)]
    assert [r.flag for r in (*reading, *interval)] == [
        Flag.FROZEN, Flag.DEMAND_HIGH, Flag.SPIKE, Flag.ZERO_RUN]
