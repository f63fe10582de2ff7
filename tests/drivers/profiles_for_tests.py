"""Small in-memory profiles for planner, decoder and driver tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.profiles import DeviceProfile, PointSpec

TEST_DEVICES = Path(__file__).resolve().parent.parent / "data" / "devices"


def make_profile(points: list[dict[str, Any]], **top: Any) -> DeviceProfile:
    data: dict[str, Any] = {
        "name": "test", "manufacturer": "Test", "model": "T1", "source": "tests",
        "max_power_w": 10_000, **top,
    }
    data["points"] = [
        {"channel": f"c{index}", "unit": "W", "kind": "instant", "type": "uint16", **point}
        for index, point in enumerate(points)
    ]
    return DeviceProfile.model_validate(data)


def make_point(**fields: Any) -> PointSpec:
    data: dict[str, Any] = {
        "channel": "p", "address": 0, "table": "holding", "type": "uint16",
        "byte_order": "big", "word_order": "big", "unit": "W", "kind": "instant", **fields,
    }
    return PointSpec.model_validate(data)
