"""Modbus exception codes and which of them are worth retrying (pure).

Shared by the TCP adapter (``client``) and the RTU framing (``rtu``), so the names and
the retry policy are written down once.
"""

from __future__ import annotations

__all__ = ["BUSY_CODES", "EXCEPTION_NAMES", "RETRYABLE_CODES"]

#: Modbus exception codes (Application Protocol V1.1b3, section 7).
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge (still processing)",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
#: Worth trying again later: busy (6), still working (5), and a gateway whose target
#: did not answer (11, the RTU-behind-TCP form of a timeout).
RETRYABLE_CODES = frozenset({5, 6, 11})
#: Worth trying again within the same poll, after a short wait: the device is alive and
#: answering, only occupied (6) or still working on an earlier request (5). Not 11: the
#: gateway has already waited out its own timeout for the target, so an immediate retry
#: costs another full timeout on the gateway's serial line, shared by every unit behind
#: it; like a timeout, it is left to the poller's backoff.
BUSY_CODES = frozenset({5, 6})
