"""Commissioning: what an installer runs on site (``ami-gateway commission``).

Modbus scans (``modbus_scan``) and the DLMS probe (``dlms_probe``) find devices and say
what they are; the read-back (``readback``) reads every point of the proposed profile
once and judges each value; ``report`` writes what was found as JSON and a printable
HTML page with a checksum, and the config snippet to paste. The nouns they share are in
``model``.
"""
