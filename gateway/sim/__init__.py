"""Simulated meters for the demo and the end-to-end tests.

    from gateway.sim import MeterSpec, serve_meters

    async with serve_meters([MeterSpec("m1", profile, seed=1)], clock) as meters:
        driver = ModbusTcpDriver("m1", meters[0].host, meters[0].port, 1, profile, clock)
"""

from gateway.sim.load import Load, LoadShape, MeterModel
from gateway.sim.modbus_meter import MeterSpec, SimulatedMeter, serve_meters

__all__ = ["Load", "LoadShape", "MeterModel", "MeterSpec", "SimulatedMeter", "serve_meters"]
