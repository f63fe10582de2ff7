"""Table-driven reflected CRC-16s, shared by the link layers that need one (pure).

Modbus RTU uses CRC-16/MODBUS (polynomial 0x8005 reflected: 0xA001) and DLMS HDLC uses
CRC-16/X.25 (0x1021 reflected: 0x8408); both shift right a byte at a time through a
256-entry table built from the reflected polynomial.
"""

from __future__ import annotations

__all__ = ["reflected_table"]


def reflected_table(poly: int) -> tuple[int, ...]:
    """The 256 CRC-16 remainders of each byte for a reflected (LSB-first) polynomial."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)
