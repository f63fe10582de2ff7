"""The DLMS probe of ``ami-gateway commission``: what a meter on a port says it is.

In order, each step's result kept as soon as it is known (in the caller's
:class:`DlmsProbeOutcome`, so a Ctrl-C keeps what was found):

1. optical port: the IEC 62056-21 sign-on at 300 baud; its identification
   ("/XXX5\\2...") names the maker (FLAG id) and the baud the meter offers; then HDLC;
2. HDLC server address discovery (:mod:`gateway.commission.dlms_addresses`): SNRM to
   the configured address and, on request, a list of physical addresses and the
   all-station address, each given the time the line needs and no more;
3. the association with the given security (none, LLS, HLS-GMAC; the secrets read
   where the meter's config points), reported "ok (security)" or why it failed
   (wrong password or key, refused, timeout), never with a secret; after a failure the
   public client (SAP 16) reads what it may, and a note says so;
4. serial number 0.0.96.1.0.255, logical device name 0.0.42.0.0.255, the clock
   0.0.1.0.0.255 and its drift against ours (measured at the exchange's midpoint, as
   the driver does), the association's object list 0.0.40.0.0.255 attribute 2 (block
   transfer followed) and the load profile's capture objects;
5. which configured OBIS codes the meter has, and the device profile that fits it.

The port is released whatever happens (RLRQ and DISC when the link still answers,
then closed): a cancelled probe leaves it free for the next command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from gateway.clock import Clock, SystemClock
from gateway.commission import dlms_catalogue as catalogue
from gateway.commission.dlms_addresses import Discovery, attempt_s, discover
from gateway.commission.dlms_target import DlmsTarget, Medium
from gateway.commission.model import DeviceIdentity, DlmsFindings, FoundDevice, Line, Protocol
from gateway.drivers.dlms.acse import Mechanism
from gateway.drivers.dlms.association import AssociationSettings
from gateway.drivers.dlms.client import DlmsClient
from gateway.drivers.dlms.cosem import (
    CLOCK,
    CURRENT_ASSOCIATION,
    LOGICAL_DEVICE_NAME,
    SERIAL_NUMBER,
    AttributeDescriptor,
    CosemClass,
    CosemDateTime,
    Obis,
    ProfileGenericAttr,
)
from gateway.drivers.dlms.counters import InvocationCounters, MemoryCounters, ReleasableCounters
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.hdlc import HdlcAddress
from gateway.drivers.dlms.mode_e import BAUD_RATES, Identification, ModeEUnsupported
from gateway.drivers.dlms.security import SecurityContext
from gateway.drivers.dlms.transport import HdlcLink, LinkStats, OpticalSignOn, WrapperLink, sign_on
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.serial_link import ByteStream, SerialStream, TcpStream
from gateway.errors import DeviceError, DriverError, ProtocolError
from gateway.profiles import load_profiles
from gateway.profiles_dlms import DlmsProfile

__all__ = ["DlmsProbeOutcome", "DlmsTarget", "Progress", "probe_dlms"]

#: (what, done, total)
Progress = Callable[[str, int, int], None]
#: How long the polite goodbye (RLRQ, DISC) may take when the probe ends or is stopped.
_RELEASE_S = 2.0
#: The client SAP every meter must accept without authentication (Green Book).
PUBLIC_CLIENT = 16
_PROTOCOL: dict[Medium, Protocol] = {"optical": "dlms_optical", "serial": "dlms_serial",
                                     "tcp": "dlms_tcp"}


@dataclass
class DlmsProbeOutcome:
    """What the probe found so far: updated step by step, whole when it returns."""

    device: FoundDevice
    findings: DlmsFindings
    notes: list[str] = field(default_factory=list)
    #: Seconds per step, by the step's progress name ("sign-on", "server address", ...,
    #: "release").
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, target: DlmsTarget) -> DlmsProbeOutcome:
        line = None if target.medium == "tcp" else Line(baudrate=target.baudrate, parity="N",
                                                         stopbits=1)
        device = FoundDevice(protocol=_PROTOCOL[target.medium], address=target.where,
                             unit_id=target.server_physical, line=line,
                             identity=DeviceIdentity(source="none"), profile=None)
        findings = DlmsFindings(identification=None, server_addresses=(),
                                association="not tried", logical_device_name=None,
                                clock=None, clock_drift_s=None, objects=())
        return cls(device, findings)


async def probe_dlms(target: DlmsTarget, *, clock: Clock | None = None,
                     progress: Progress | None = None,
                     profiles: Mapping[str, DlmsProfile] | None = None,
                     outcome: DlmsProbeOutcome | None = None) -> DlmsProbeOutcome:
    """Probe the meter at ``target``. ``outcome`` (made with
    :meth:`DlmsProbeOutcome.start`) holds what was found when the probe is cancelled.
    Meter errors are findings, not exceptions; a port that cannot be opened raises
    :class:`~gateway.errors.ConnectError`."""
    got = outcome or DlmsProbeOutcome.start(target)
    probe = _Probe(target, got, clock or SystemClock(), progress,
                   profiles if profiles is not None else _dlms_profiles())
    try:
        await probe.run()
    except asyncio.CancelledError:
        got.findings = replace(got.findings, interrupted=True)
        raise
    finally:
        await probe.release()
        got.timings["release"] = asyncio.get_running_loop().time() - probe.step_began
        got.device = replace(got.device, notes=tuple(got.notes))
    return got


def _dlms_profiles() -> dict[str, DlmsProfile]:
    return {n: p for n, p in load_profiles().items() if isinstance(p, DlmsProfile)}


class _Probe:
    def __init__(self, target: DlmsTarget, out: DlmsProbeOutcome, clock: Clock,
                 progress: Progress | None, profiles: Mapping[str, DlmsProfile]) -> None:
        self.t, self.out, self.clock = target, out, clock
        self.profiles = profiles
        self._progress = progress
        self.stats = LinkStats()
        self.stream: ByteStream | None = None
        self.client: DlmsClient | None = None
        self.counters: InvocationCounters | None = None
        self.steps = (["sign-on"] if target.medium == "optical" else []) + [
            "server address", "association", "serial number", "logical device name",
            "clock", "object list", "load profile", "profile"]
        self._step = 0
        self._current: str | None = None
        self.step_began = asyncio.get_running_loop().time()

    def _next(self, what: str) -> None:
        """Step ``what`` begins: the last one's time is kept, progress is reported."""
        now = asyncio.get_running_loop().time()
        if self._current is not None:
            self.out.timings[self._current] = now - self.step_began
        self._current, self.step_began = what, now
        if self._progress is not None:
            self._progress(what, self._step, len(self.steps))
        self._step += 1

    def _set(self, **changes: object) -> None:
        self.out.findings = replace(self.out.findings, **changes)  # type: ignore[arg-type]

    def _identity(self, **changes: object) -> None:
        identity = replace(self.out.device.identity, **changes)  # type: ignore[arg-type]
        self.out.device = replace(self.out.device, identity=identity)

    async def run(self) -> None:
        t = self.t
        self.stream = self._stream()
        await self.stream.open()
        try:
            if t.medium == "optical":
                self._next("sign-on")
                if not await self._sign_on():
                    return
            server = await self._addresses()
            if server is None:
                self._set(association="not tried: no server address answered SNRM")
                return
            self._next("association")
            if not await self._associate(server) and not (
                    t.public_fallback and t.client_sap != PUBLIC_CLIENT
                    and await self._public(server)):
                return
            try:
                await self._read()
            except DriverError as exc:  # a broken link (timeout) or a malformed answer
                self.out.notes.append(f"reads stopped at the {self._current}: "
                                      f"{catalogue.reason(exc)}")
        finally:
            self._next("release")

    def _stream(self) -> ByteStream:
        t = self.t
        if t.medium == "tcp":
            return TcpStream(t.address, t.tcp_port, connect_timeout_s=t.timeout_s)
        baud = 300 if t.medium == "optical" else t.baudrate
        return SerialStream(t.address, LineSettings(baud, "N", 1))

    async def _sign_on(self) -> bool:
        assert isinstance(self.stream, SerialStream)
        how = OpticalSignOn(self.t.device_address, self.t.baudrate)
        try:
            ident = await sign_on(self.stream, how, self.stats)
        except ModeEUnsupported as exc:  # it said who it is, and that it has no HDLC
            self._identified(exc.identification)
            self._set(association=f"not tried: {catalogue.reason(exc)}")
            self.out.device = replace(self.out.device, line=None)
            return False
        except DriverError as exc:  # no answer, or not an identification
            self._set(association=f"not tried: optical sign-on failed: {catalogue.reason(exc)}")
            self.out.device = replace(self.out.device, line=None)
            return False
        self._identified(ident)
        self.out.device = replace(self.out.device,
                                  line=Line(baudrate=_agreed(ident, self.t.baudrate),
                                            parity="N", stopbits=1))
        return True

    def _identified(self, ident: Identification) -> None:
        text = ident.encode().decode("ascii").rstrip("\r\n")
        self._set(identification=text)
        self._identity(source="iec62056_21", vendor=catalogue.vendor_of(ident.manufacturer),
                       model=ident.identification or None, raw=(("identification", text),))

    async def _addresses(self) -> HdlcAddress | None:
        """The server address to associate with (None: nobody answered)."""
        t = self.t
        self._next("server address")
        if t.medium == "tcp" and t.framing == "wrapper":
            self.out.notes.append(f"TCP wrapper: no HDLC addresses; logical device "
                                  f"{t.server_logical}")
            return HdlcAddress.server(t.server_logical)
        assert self.stream is not None
        baud = None if t.medium == "tcp" else (self.out.device.line or Line(
            baudrate=t.baudrate, parity="N", stopbits=1)).baudrate
        wait = attempt_s(baud, t.answer_s, t.server_logical)
        candidates = list(dict.fromkeys([t.server_physical, *t.scan_physical]))
        found = Discovery()
        try:
            await discover(self.stream, HdlcAddress.client(t.client_sap), t.server_logical,
                           candidates, wait_s=wait, disconnect=t.medium != "optical",
                           found=found, progress=self._progress)
        finally:
            self._set(server_addresses=tuple(_number(a) for a in found.answered))
            self.out.notes.append(
                f"server address discovery: {found.tried} of {len(candidates)} address(es) "
                f"tried in {found.elapsed_s:.2f} s ({wait:.3f} s each: SNRM and UA on the "
                f"wire{f' at {baud} baud' if baud else ''} + {t.answer_s:g} s turnaround)")
            for refused in found.refused:
                self.out.notes.append(f"server address {refused} answered DM: a station "
                                      "that will not link with this client")
        if not found.answered:
            return None
        chosen = next((a for a in found.answered if a.lower == t.server_physical),
                      found.answered[0])
        self.out.device = replace(self.out.device, unit_id=chosen.lower)
        if chosen.lower != t.server_physical:
            self.out.notes.append(f"the meter answers at server_physical = {chosen.lower}, "
                                  f"not the configured {t.server_physical}")
        return chosen

    def _link(self, server: HdlcAddress, client_sap: int) -> HdlcLink | WrapperLink:
        t = self.t
        assert self.stream is not None
        if t.medium == "tcp" and t.framing == "wrapper":
            return WrapperLink(self.stream, client_sap, t.server_logical,
                               timeout_s=t.timeout_s, device=t.where)
        return HdlcLink(self.stream, HdlcAddress.client(client_sap), server,
                        proposal=t.proposal, timeout_s=t.timeout_s, retries=t.retries,
                        device=t.where)

    async def _associate(self, server: HdlcAddress) -> bool:
        t = self.t
        link = self._link(server, t.client_sap)
        try:
            self.client = DlmsClient(link, self._settings())
            await self.client.associate()
        except DriverError as exc:
            self._set(association=f"failed: {catalogue.failure(exc, t.security)}")
            return False
        self._set(association=f"ok ({t.security})")
        pdu = self.client.negotiated_pdu_size
        if isinstance(link, HdlcLink):
            p = link.params
            self.out.notes.append(f"HDLC: frames of {p.max_info_rx} bytes in, "
                                  f"{p.max_info_tx} out, window {p.window_rx}/{p.window_tx}; "
                                  f"APDUs up to {pdu} bytes")
        elif pdu is not None:
            self.out.notes.append(f"APDUs up to {pdu} bytes")
        return True

    async def _public(self, server: HdlcAddress) -> bool:
        """The configured association failed: the public client (SAP 16, no security)
        still reads the identity and an object list from most meters. The failed
        association took the link down (an optical port signs off): a new one."""
        assert self.stream is not None
        failed = self.out.findings.association
        self.stream.close()
        try:
            self.stream = self._stream()
            await self.stream.open()
            if self.t.medium == "optical" and not await self._sign_on():
                self.out.notes.append(f"the public client was not tried: "
                                      f"{self.out.findings.association}")
                return False
            self.client = DlmsClient(self._link(server, PUBLIC_CLIENT), AssociationSettings())
            await self.client.associate()
        except DriverError as exc:
            self.out.notes.append("the public client (SAP 16) could not associate either: "
                                  f"{catalogue.failure(exc, 'none')}")
            return False
        finally:
            self._set(association=failed)
        self.out.notes.append("read as the public client (SAP 16, no security): the "
                              "configured client may see other objects")
        return True

    def _settings(self) -> AssociationSettings:
        t, secrets = self.t, self.t.secrets
        if t.security == "none":
            return AssociationSettings()
        if secrets is None:
            raise ValueError(f"security {t.security!r} needs the meter's secrets")
        if t.security == "lls":
            assert secrets.password is not None
            return AssociationSettings(mechanism=Mechanism.LLS, password=secrets.password)
        assert secrets.keys is not None
        self.counters = ReleasableCounters(t.counters_path) if t.counters_path is not None \
            else MemoryCounters()
        if t.counters_path is not None:
            t.counters_path.parent.mkdir(parents=True, exist_ok=True)
        return AssociationSettings(mechanism=Mechanism.HLS_GMAC, security=SecurityContext(
            secrets.keys, secrets.system_title, self.counters))

    async def _read(self) -> None:
        self._next("serial number")
        serial = await self._get_text(AttributeDescriptor(CosemClass.DATA, SERIAL_NUMBER, 2))
        if serial is not None:
            self._identity(source="dlms", serial=serial)
        self._next("logical device name")
        name = await self._get_text(AttributeDescriptor(CosemClass.DATA, LOGICAL_DEVICE_NAME,
                                                        2))
        self._set(logical_device_name=name)
        if name is not None:
            identity = self.out.device.identity
            self._identity(source="dlms", raw=(*identity.raw, ("logical_device_name", name)),
                           vendor=identity.vendor or catalogue.vendor_of(name[:3]))
        self._next("clock")
        await self._read_clock()
        self._next("object list")
        await self._read_objects()

    async def _get(self, attribute: AttributeDescriptor) -> Data | None:
        """The attribute's value; a meter's refusal is a note and None. A broken link
        (timeout) ends the probe's reads: it propagates."""
        assert self.client is not None
        try:
            return await self.client.get(attribute)
        except DeviceError as exc:
            self.out.notes.append(f"{attribute.obis} attribute {attribute.attribute_id}: "
                                  f"{catalogue.reason(exc)}")
            return None

    async def _get_text(self, attribute: AttributeDescriptor) -> str | None:
        raw = await self._get(attribute)
        return None if raw is None else catalogue.text(raw)

    async def _read_clock(self) -> None:
        t = self.t
        assert self.client is not None
        try:  # as the driver measures it: against the exchange's midpoint
            raw, midpoint = await self.client.read_clock(CLOCK, self.clock)
        except DeviceError as exc:
            self.out.notes.append(f"{CLOCK} attribute 2: {catalogue.reason(exc)}")
            return
        zone = ZoneInfo(t.zone)
        try:
            meter_now = CosemDateTime.from_data(raw).to_datetime(sign=t.sign, zone=zone)
        except ProtocolError as exc:  # a date-time with unspecified fields, say
            self.out.notes.append(f"{CLOCK} attribute 2: {exc}")
            return
        self._set(clock=meter_now.astimezone(zone).isoformat(),
                  clock_drift_s=round((meter_now - midpoint).total_seconds(), 3))

    async def _read_objects(self) -> None:
        raw = await self._get(AttributeDescriptor(CosemClass.ASSOCIATION_LN,
                                                  CURRENT_ASSOCIATION, 2))
        objects = catalogue.object_list(raw) if raw is not None else ()
        self._set(objects=objects)
        self._next("load profile")
        t = self.t
        if (CosemClass.PROFILE_GENERIC, t.load_profile) in objects:
            columns = await self._get(AttributeDescriptor(
                CosemClass.PROFILE_GENERIC, Obis.parse(t.load_profile),
                ProfileGenericAttr.CAPTURE_OBJECTS))
            if columns is not None:
                self._set(capture_objects=catalogue.capture_objects(columns))
        self._next("profile")
        if raw is None:
            return
        self._set(configured_present=catalogue.presence(t.configured, objects))
        proposal = catalogue.propose(objects, self.profiles)
        self.out.device = replace(self.out.device, profile=proposal.profile,
                                  candidates=proposal.candidates)
        self.out.notes.extend(proposal.notes)

    async def release(self) -> None:
        """RLRQ and DISC when possible, then the port closed; never raises."""
        try:
            if self.client is not None:
                async with asyncio.timeout(_RELEASE_S):
                    await self.client.close()
        except (DriverError, TimeoutError):
            pass  # the link is closed below; the meter drops it after its own timeout
        finally:
            if self.stream is not None:
                with contextlib.suppress(DriverError):
                    self.stream.close()
            if isinstance(self.counters, ReleasableCounters):
                self.counters.release()


def _agreed(ident: Identification, cap: int) -> int:
    """The HDLC baud of the sign-on: the meter's offer, capped (as SignOnClient agrees)."""
    return max(b for b in BAUD_RATES.values() if b <= ident.baud and b <= cap)


def _number(address: HdlcAddress) -> int:
    """The lower (physical) address, or the upper one of a one-byte address."""
    return address.lower if address.lower is not None else address.upper
