"""Simulated meters for the demo and the end-to-end tests.

Each meter is a real pymodbus TCP server on loopback serving its profile's registers,
computed from the shared clock at every request (``serve_meters``); or the same meters
as RTU slaves on a simulated RS-485 line on a pseudo-terminal (``serve_rtu_bus``, with
the line's pace and injectable faults)::

    from gateway.clock import ScaledClock
    from gateway.drivers.modbus import ModbusTcpDriver
    from gateway.profiles import modbus_profiles
    from gateway.sim import LoadShape, MeterSpec, serve_meters

    profiles = modbus_profiles()
    clock = ScaledClock(datetime(2026, 3, 1, tzinfo=UTC), speed=720.0)
    specs = [
        MeterSpec("meter-001", profiles["eastron_sdm630"], seed=1, start_energy_wh=1_234_567),
        MeterSpec("meter-002", profiles["eastron_sdm120"], seed=2,
                  shape=LoadShape(base_w=150, peak_w=3000, tz="Europe/Kyiv")),
    ]
    async with serve_meters(specs, clock) as meters:
        for meter in meters:
            driver = ModbusTcpDriver(meter.meter_id, meter.host, meter.port,
                                     meter.device_id, meter.profile, clock)
            readings = await driver.read()
            exact_wh = meter.true_energy_wh(clock.now())
"""

from gateway.sim.load import Load, LoadShape, MeterModel, TariffSchedule
from gateway.sim.modbus_meter import MeterSpec, SimulatedMeter, serve_meters
from gateway.sim.rtu_bus import Faults, RtuBus, serve_rtu_bus

__all__ = ["Faults", "Load", "LoadShape", "MeterModel", "MeterSpec", "RtuBus", "SimulatedMeter",
           "TariffSchedule", "serve_meters", "serve_rtu_bus"]
