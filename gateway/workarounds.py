"""Per-meter workarounds for Modbus devices that bend the protocol (config models).

A meter's ``workarounds`` table, like Telegraf's modbus ``workarounds``: every one is
off by default and switched on for the unit, firmware or gateway at hand. What holds
for every unit of a model belongs in its profile instead (``allow_gap_reads``,
``max_registers_per_request``, ``inter_request_ms``); a workaround can only make the
reads more cautious than the profile, never bolder.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.profiles import DeviceProfile

__all__ = ["TcpWorkarounds", "Workarounds", "workaround_fix"]


class Workarounds(BaseModel):
    """The workarounds of an RTU meter (serial port or serial device server)."""

    # Strict: TOML has real booleans, so ``= 1`` for a switch is more likely a slip.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Read every point with a request of its own: for devices that refuse (exception 2
    #: or 3) or garble any read covering more than one of their values, even adjacent
    #: ones, as some TCP-to-RTU gateways and older firmware do.
    one_request_per_value: bool = False
    #: Merge only contiguous points, never reading across unmapped registers, whatever
    #: the profile allows: for a unit whose firmware answers exception 2 to a gap that
    #: other units of its model read fine.
    no_gap_reads: bool = False
    #: Lowers the profile's registers per request: for a gateway or firmware with a
    #: smaller buffer than the model's documentation says (it answers exception 3, or
    #: cuts the reply short).
    max_registers_per_request: Annotated[int, Field(ge=1, le=125)] | None = None
    #: Wait this long after the connection (TCP) or the port (RTU) opens before the
    #: first request to this device: some TCP gateways drop a request that arrives
    #: right after the connect, and a slave that resets when its port opens (boards
    #: wired to DTR) is deaf while it boots. On a shared RTU bus only this device waits.
    pause_after_connect_ms: Annotated[int, Field(ge=0, le=10_000)] = 0

    def profile_for(self, profile: DeviceProfile) -> DeviceProfile:
        """``profile`` as this unit is read: no bolder than the profile allows."""
        update: dict[str, Any] = {}
        if self.no_gap_reads:
            update["allow_gap_reads"] = False
        if self.max_registers_per_request is not None:
            update["max_registers_per_request"] = min(self.max_registers_per_request,
                                                      profile.max_registers_per_request)
        return profile.model_copy(update=update) if update else profile


class TcpWorkarounds(Workarounds):
    """The workarounds of a Modbus TCP meter: those of every meter, and one for its
    connection, which it has to itself."""

    #: Close the connection after every poll and open a new one for the next: for
    #: gateways that serve one client at a time (a SCADA beside the gateway waits for
    #: it) or leak a socket on every long-lived connection until they stop answering.
    close_after_poll: bool = False


#: Keys people write here that are spelled otherwise or live elsewhere (some are
#: Telegraf's names), with the fix.
_ELSEWHERE = "remove it here and set it on the meter itself, beside timeout_s"
_PAUSE = ("remove it and set inter_request_ms on the meter itself, beside timeout_s: "
          "that is the pause between two requests")
_MISPLACED = {
    "pause_between_requests_ms": _PAUSE,
    "pause_between_requests": _PAUSE,
    "inter_request_ms": _ELSEWHERE,
    "turnaround_ms": _ELSEWHERE,
    "busy_retries": _ELSEWHERE,
    "busy_retry_ms": _ELSEWHERE,
    "one_request_per_field": "write one_request_per_value = true",
    "close_connection_after_gather": "write close_after_poll = true",
    "pause_after_connect": "write pause_after_connect_ms = <milliseconds>",
}


def workaround_fix(key: str, protocol: str) -> str:
    """The fix for an unknown ``key`` in the workarounds of a ``protocol`` meter."""
    if key == "close_after_poll" and protocol != "modbus_tcp":
        return ("close_after_poll is for modbus_tcp meters: the meters of an RTU bus share "
                "one port (or one device server connection), which the bus keeps open; "
                "remove it")
    if key in _MISPLACED:
        return _MISPLACED[key]
    model = TcpWorkarounds if protocol == "modbus_tcp" else Workarounds
    known = ", ".join(model.model_fields)
    return f"remove it or correct its spelling; the workarounds are: {known}"
