"""The edge id rule and the v1 topic layout (pure)."""

from __future__ import annotations

import pytest

from gateway.mqtt_names import (
    SHARED_INTERVALS,
    acks_topic,
    check_edge_id,
    edge_of_intervals_topic,
    intervals_topic,
    shared_intervals,
)


@pytest.mark.parametrize("good", ["edge-a", "E_01", "site.7-b", "x", "a" * 64])
def test_usable_edge_ids_pass_unchanged(good: str) -> None:
    assert check_edge_id(good) == good


@pytest.mark.parametrize(("bad", "shown"), [
    ("edge+", "'+'"), ("edge#", "'#'"), ("a/b", "'/'"), ("edge a", "' '"),
    ("zähler", "'ä'"), ("$SYS", "'$'"), ("a%u", "'%'"),
])
def test_ids_with_topic_characters_are_refused_naming_them(bad: str, shown: str) -> None:
    with pytest.raises(ValueError, match="contains") as info:
        check_edge_id(bad)
    assert shown in str(info.value)


@pytest.mark.parametrize("bad", ["", "a" * 65, ".", ".."])
def test_empty_long_and_dot_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="edge id"):
        check_edge_id(bad)


def test_topics_of_an_edge() -> None:
    assert intervals_topic("edge-a") == "ami/v1/edge-a/intervals"
    assert acks_topic("edge-a") == "ami/v1/edge-a/acks"
    with pytest.raises(ValueError):
        intervals_topic("edge-b/intervals/#")


def test_shared_subscription_and_its_group() -> None:
    assert SHARED_INTERVALS == "$share/ingest/ami/v1/+/intervals"
    assert shared_intervals("west") == "$share/west/ami/v1/+/intervals"
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="share group"):
            shared_intervals(bad)


def test_edge_of_a_received_topic() -> None:
    assert edge_of_intervals_topic("ami/v1/edge-a/intervals") == "edge-a"
    for bad in ("ami/v1/edge-a/acks", "ami/v2/edge-a/intervals", "ami/v1/a/b/intervals",
                "ami/v1//intervals"):
        with pytest.raises(ValueError):
            edge_of_intervals_topic(bad)
