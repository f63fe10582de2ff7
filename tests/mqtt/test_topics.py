"""Topic patterns: MQTT wildcards, named placeholders, refused patterns."""

from __future__ import annotations

import pytest

from gateway.drivers.mqtt.topics import TopicPattern
from gateway.errors import ConfigError


@pytest.mark.parametrize(("pattern", "topic", "expected"), [
    ("meters/{meter_id}/energy", "meters/m-1/energy", {"meter_id": "m-1"}),
    ("meters/{meter_id}/energy", "meters/m-1/power", None),
    ("meters/{meter_id}/energy", "meters/m-1/energy/x", None),
    ("meters/{meter_id}/energy", "meters/energy", None),
    ("tele/+/SENSOR", "tele/house/SENSOR", {}),
    ("tele/+/SENSOR", "tele/a/b/SENSOR", None),
    ("site/{site}/#", "site/north/a/b/c", {"site": "north"}),
    ("site/{site}/#", "site/north", {"site": "north"}),  # '#' also matches its parent
    ("#", "anything/at/all", {}),
    ("#", "$SYS/broker/load", None),  # wildcards do not reach $ topics
    ("{meter_id}/status/+", "$SYS/status/x", None),
    ("{prefix}/status/{component}", "shellypro3em-1/status/emdata:0",
     {"prefix": "shellypro3em-1", "component": "emdata:0"}),
    ("a/+/c", "a//c", {}),  # '+' matches an empty level, as in MQTT
])
def test_match(pattern: str, topic: str, expected: dict[str, str] | None) -> None:
    assert TopicPattern.parse(pattern).match(topic) == expected


def test_filter_turns_placeholders_into_plus() -> None:
    pattern = TopicPattern.parse("meters/{meter_id}/{kind}/#")
    assert pattern.filter == "meters/+/+/#"
    assert pattern.placeholders == ("meter_id", "kind")


@pytest.mark.parametrize(("pattern", "reason"), [
    ("", "empty"),
    ("a/#/b", "'#' may only be the last level"),
    ("a/b#", "mixes"),
    ("a/x+/b", "mixes"),
    ("meters/m{meter_id}/energy", "mixes"),
    ("meters/{meter id}/energy", "mixes"),
    ("meters/{id}/{id}", "appears twice"),
    ("a/\x00", "NUL"),
])
def test_bad_patterns_name_the_problem(pattern: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TopicPattern.parse(pattern)
    assert reason in str(caught.value)
    assert caught.value.key == "topic"
    assert caught.value.fix
