"""Outputs beyond the embedded store: encoders (pure) and the shells that deliver them.

``influx_line`` turns intervals into InfluxDB line protocol and back; ``influx_http``
writes those lines over the v1 HTTP API (InfluxDB 1.x, and the v1 compatibility API of
2.x and 3.x), in batches, with retries and per-line rejection.
"""
