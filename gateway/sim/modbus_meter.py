"""Simulated Modbus TCP meters: real pymodbus servers on loopback, one per meter.

Each meter serves its profile's registers, computed from the shared injected clock at
every request, so a demo on a ``ScaledClock`` sees energy advance at the scaled rate
and a test on a ``ManualClock`` sees exactly what it set. Registers hold what a real
meter would: the point's value in its unit, wrapped at its rollover modulus, encoded
with its type, scale and word/byte order. Profiles that forbid gap reads leave their
unmapped registers invalid, so reading across them is refused as on the device.

Faults for tests and demos: :meth:`SimulatedMeter.fail_with` answers every request (or
the next few) with a Modbus exception code, :meth:`SimulatedMeter.set_silent` accepts
requests and never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.clock import Clock
from gateway.drivers.modbus.decode import decode, encode
from gateway.model import SERIAL_NUMBER
from gateway.profiles import DeviceProfile, Table
from gateway.sim.load import Instant, Load, LoadShape, MeterModel, TariffSchedule

__all__ = ["MeterSpec", "SimulatedMeter", "serve_meters"]

_THREE_PHASE = {"1.0.52.7.0.255", "1.0.51.7.0.255", "1.0.56.7.0.255", "1.0.72.7.0.255"}


@dataclass(frozen=True)
class MeterSpec:
    """One simulated meter: who it is, what it speaks, and the household behind it."""

    meter_id: str
    profile: DeviceProfile
    seed: int = 0
    device_id: int = 1
    #: The energy register's reading at ``epoch`` (near the top of a 16-bit register
    #: forces a rollover soon after the start).
    start_energy_wh: int = 0
    #: When ``start_energy_wh`` applies; default: the clock's time when serving starts.
    epoch: datetime | None = None
    shape: LoadShape = field(default_factory=LoadShape)
    #: 0 picks a free port.
    port: int = 0
    #: The serial number the meter reports (its identity point, if the profile has one).
    serial: int = 0
    #: A two-rate meter: its day (1.0.1.8.1.255) and night (1.0.1.8.2.255) registers
    #: count by this schedule, and its total register (1.0.1.8.0.255) is their sum.
    tariffs: TariffSchedule | None = None
    #: Of ``start_energy_wh``, the share already on the night register.
    start_night_wh: int = 0


def _quantities(energy_wh: int, now: Instant, serial: int = 0,
                tariff_wh: tuple[int, int] | None = None) -> dict[str, Decimal]:
    """Channel -> value in the base unit (W, Wh, V, A, Hz, PF; the serial number)."""
    if tariff_wh is not None:
        energy_wh = sum(tariff_wh)
    energy = Decimal(energy_wh)
    values = {
        SERIAL_NUMBER: Decimal(serial),
        "1.0.1.8.0.255": energy,
        "1.0.2.8.0.255": Decimal(0),
        "1.0.15.8.0.255": energy,
        "1.0.1.7.0.255": Decimal(now.power_w),
        "1.0.16.7.0.255": Decimal(now.power_w),
        "1.0.13.7.0.255": now.power_factor,
        "1.0.14.7.0.255": now.frequency_hz,
        "1.0.91.7.0.255": now.neutral_current_a,
    }
    for phase, base in zip(now.phases, (20, 40, 60), strict=False):
        values[f"1.0.{base + 11}.7.0.255"] = phase.current_a
        values[f"1.0.{base + 12}.7.0.255"] = phase.voltage_v
        values[f"1.0.{base + 13}.7.0.255"] = phase.power_factor
        values[f"1.0.{base + 16}.7.0.255"] = Decimal(phase.power_w)
        values[f"1.0.{base + 1}.7.0.255"] = Decimal(phase.power_w)
    if tariff_wh is not None:
        values["1.0.1.8.1.255"], values["1.0.1.8.2.255"] = map(Decimal, tariff_wh)
    return values


class SimulatedMeter:
    """A running simulated meter: its model, its server and its fault switches."""

    def __init__(self, spec: MeterSpec, clock: Clock, host: str) -> None:
        self.spec = spec
        self.host = host
        self.port = spec.port
        self._clock = clock
        phases = 3 if _THREE_PHASE & {p.channel for p in spec.profile.points} else 1
        self.model = self._model(spec.epoch or clock.now(), spec.start_energy_wh,
                                 spec.start_night_wh, phases)
        self._phases = phases
        self.serial = spec.serial
        self._points = {p.channel: p for p in spec.profile.points}
        self._fail_code: int | None = None
        self._fail_times: int | None = None
        self._awake = asyncio.Event()
        self._awake.set()
        self._server: ModbusTcpServer | None = None
        #: Requests answered (or refused) so far.
        self.requests = 0

    @property
    def meter_id(self) -> str:
        return self.spec.meter_id

    @property
    def device_id(self) -> int:
        return self.spec.device_id

    @property
    def profile(self) -> DeviceProfile:
        return self.spec.profile

    def _model(self, epoch: datetime, start_wh: int, start_night_wh: int,
               phases: int) -> MeterModel:
        spec = self.spec
        return MeterModel(Load(spec.shape, spec.seed), epoch, start_energy_wh=start_wh,
                          phases=phases, tariffs=spec.tariffs,
                          start_tariff_wh=(start_wh - start_night_wh, start_night_wh))

    def true_energy_wh(self, at: datetime) -> int:
        """Exact energy in Wh at ``at`` (before any register wrap); on a two-rate meter,
        the sum of its tariff registers."""
        if self.spec.tariffs is not None:
            return sum(self.model.tariff_energy_wh(at))
        return self.model.true_energy_wh(at)

    def _values(self, at: datetime) -> dict[str, Decimal]:
        tariffs = self.model.tariff_energy_wh(at) if self.spec.tariffs is not None else None
        return _quantities(self.model.true_energy_wh(at), self.model.instant(at), self.serial,
                           tariffs)

    def true_value(self, channel: str, at: datetime) -> Decimal:
        """The exact value a point stands for at ``at``, in its unit, wrapped if it rolls over."""
        point = self._points[channel]
        base = self._values(at)
        value = base.get(channel, Decimal(0)) / point.unit.factor
        modulus = point.rollover_modulus
        return value % modulus if modulus is not None else value

    def register_value(self, channel: str, at: datetime) -> Decimal:
        """What an exact reader decodes from the registers at ``at`` (after type rounding)."""
        point = self._points[channel]
        return decode(point, encode(point, self.true_value(channel, at)))

    def registers(self, table: Table, at: datetime) -> dict[int, int]:
        """Address -> register word of every mapped register of ``table`` at ``at``."""
        base = self._values(at)
        words: dict[int, int] = {}
        for point in self.spec.profile.points:
            if point.table != table:
                continue
            value = base.get(point.channel, Decimal(0)) / point.unit.factor
            modulus = point.rollover_modulus
            if modulus is not None:
                value %= modulus
            for index, word in enumerate(encode(point, value)):
                words[point.address + index] = word
        return words

    def exchange(self, *, serial: int, start_energy_wh: int, at: datetime) -> None:
        """An installer swaps the meter at ``at``: a new serial number and a new register
        starting at ``start_energy_wh``, on the same household's load."""
        self.serial = serial
        self.model = self._model(at, start_energy_wh, 0, self._phases)

    def fail_with(self, code: int | None, *, times: int | None = None) -> None:
        """Answer every request with Modbus exception ``code`` (6: busy), or only the
        next ``times`` requests; None to stop."""
        self._fail_code = None if code is None else int(ExcCodes(code))
        self._fail_times = times

    def set_silent(self, silent: bool) -> None:
        """Accept requests but never answer them (a hung device), until set back."""
        if silent:
            self._awake.clear()
        else:
            self._awake.set()

    async def start(self) -> None:
        devices = [SimDevice(id=self.spec.device_id, simdata=self._layout(),
                             action=self._on_request)]
        if self.spec.device_id != 0:
            # Any other unit id: answer as a TCP-to-RTU gateway whose target is absent.
            devices.append(SimDevice(id=0, simdata=self._empty_layout(),
                                     action=_no_such_unit))
        server = ModbusTcpServer(devices, address=(self.host, self.spec.port))
        await server.serve_forever(background=True)
        self._server = server
        listener = server.transport
        assert isinstance(listener, asyncio.Server)
        self.port = int(listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._awake.set()  # release hung requests so their tasks can finish
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    def _layout(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """pymodbus blocks: coils, discrete inputs, holding, input registers."""
        bits = [SimData(address=0, values=False, datatype=DataType.BITS)]
        return ([*bits], [*bits], self._table_layout("holding"), self._table_layout("input"))

    @staticmethod
    def _empty_layout() -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        bits = [SimData(address=0, values=False, datatype=DataType.BITS)]
        registers = [SimData(address=0, count=125, values=0, datatype=DataType.REGISTERS)]
        return ([*bits], [*bits], [*registers], [*registers])

    def _table_layout(self, table: Table) -> list[SimData]:
        points = sorted((p for p in self.spec.profile.points if p.table == table),
                        key=lambda p: p.address)
        if not points:
            return [SimData(address=0, datatype=DataType.INVALID)]
        if self.spec.profile.allow_gap_reads:
            start = points[0].address
            count = max(p.end for p in points) - start
            return [SimData(address=start, count=count, values=0, datatype=DataType.REGISTERS)]
        return [SimData(address=p.address, count=p.width, values=0,
                        datatype=DataType.REGISTERS) for p in points]

    async def _on_request(self, function_code: int, start_address: int, address: int,
                          count: int, registers: list[int],
                          set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        await self._awake.wait()
        self.requests += 1
        if self._fail_code is not None:
            code = ExcCodes(self._fail_code)
            if self._fail_times is not None:
                self._fail_times -= 1
                if self._fail_times <= 0:
                    self._fail_code = self._fail_times = None
            return code
        if set_values is not None or function_code not in (3, 4):
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's registers are read-only here
        table: Table = "input" if function_code == 4 else "holding"
        words = self.registers(table, self._clock.now())
        for index in range(address, address + count):
            registers[index - start_address] = words.get(index, 0)
        return None


async def _no_such_unit(function_code: int, start_address: int, address: int, count: int,
                        registers: list[int],
                        set_values: list[int] | list[bool] | None) -> ExcCodes | None:
    return ExcCodes.GATEWAY_NO_RESPONSE


@asynccontextmanager
async def serve_meters(specs: Sequence[MeterSpec], clock: Clock,
                       host: str = "127.0.0.1") -> AsyncIterator[list[SimulatedMeter]]:
    """Start one Modbus TCP server per spec; yield the running meters (with ports)."""
    meters = [SimulatedMeter(spec, clock, host) for spec in specs]
    try:
        for meter in meters:
            await meter.start()
        yield meters
    finally:
        for meter in meters:
            await meter.stop()
