"""The MQTT topic layout of the edge uplink (version 1) and the rule for edge ids.

Edges publish interval batches to ``ami/v1/<edge_id>/intervals``; the central ingest
answers on ``ami/v1/<edge_id>/acks`` and reads every edge through one MQTT v5 shared
subscription, ``$share/<group>/ami/v1/+/intervals``, so its workers split the load.

An edge's MQTT username *is* its edge id, and the broker's pattern ACL
(``config/mosquitto/acl``) substitutes that username into a topic filter
(``ami/v1/%u/intervals``). A ``+`` or ``#`` in a username would turn the filter into a
wildcard over other edges' topics, and a ``/`` would make one edge span several topic
levels; Mosquitto refuses ``+``/``#`` names under pattern ACLs but lets ``/`` through.
So edge ids are held to a conservative alphabet here, before they reach any broker.
"""

from __future__ import annotations

import re

TOPIC_ROOT = "ami/v1"
EDGE_ID_MAX_LEN = 64
DEFAULT_SHARE_GROUP = "ingest"

_EDGE_ID = re.compile(r"[A-Za-z0-9_.-]+")
_INTERVALS = re.compile(r"ami/v1/([^/]+)/intervals")


def check_edge_id(text: str) -> str:
    """Return ``text`` if it is a usable edge id / MQTT username, else raise ValueError."""
    if not text:
        raise ValueError("edge id is empty: use 1 to 64 characters of A-Z a-z 0-9 _ . -")
    if len(text) > EDGE_ID_MAX_LEN:
        raise ValueError(f"edge id {text[:20]!r}... has {len(text)} characters; "
                         f"the limit is {EDGE_ID_MAX_LEN}")
    if _EDGE_ID.fullmatch(text) is None:
        bad = "".join(sorted({c for c in text if _EDGE_ID.fullmatch(c) is None}))
        raise ValueError(
            f"edge id {text!r} contains {bad!r}: only A-Z a-z 0-9 _ . - are allowed, because "
            "the edge id is the MQTT username that the broker's pattern ACL puts into a topic "
            "filter ('+', '#' would widen it to other edges, '/' would add topic levels)")
    if text in {".", ".."}:
        raise ValueError(f"edge id {text!r} is not a name: use letters or digits")
    return text


def intervals_topic(edge_id: str) -> str:
    """Where edge ``edge_id`` publishes its interval batches."""
    return f"{TOPIC_ROOT}/{check_edge_id(edge_id)}/intervals"


def acks_topic(edge_id: str) -> str:
    """Where the central ingest acknowledges the batches of edge ``edge_id``."""
    return f"{TOPIC_ROOT}/{check_edge_id(edge_id)}/acks"


def shared_intervals(group: str = DEFAULT_SHARE_GROUP) -> str:
    """The MQTT v5 shared subscription through which ingest workers split all edges."""
    if not group or any(c in group for c in "/+#"):
        raise ValueError(f"share group {group!r} must be non-empty without '/', '+' or '#'")
    return f"$share/{group}/{TOPIC_ROOT}/+/intervals"


SHARED_INTERVALS = shared_intervals()


def edge_of_intervals_topic(topic: str) -> str:
    """The edge id of a message received on ``ami/v1/<edge_id>/intervals``."""
    match = _INTERVALS.fullmatch(topic)
    if match is None:
        raise ValueError(f"topic {topic!r} is not {TOPIC_ROOT}/<edge_id>/intervals")
    return check_edge_id(match.group(1))
