"""A DLMS client: one association with one meter over one link (async shell).

It runs the sans-IO :class:`~gateway.drivers.dlms.association.Association` over an
:class:`~gateway.drivers.dlms.transport.ApduLink`: associate (with the HLS passes 3 and
4 when asked), GET attributes (block transfer followed to the last block), release.
Any failure on the link ends the association: the next call associates again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from gateway.clock import Clock
from gateway.drivers.dlms.apdu import Access
from gateway.drivers.dlms.association import Association, AssociationSettings, State, Value
from gateway.drivers.dlms.cosem import AttributeDescriptor, CosemClass, Obis
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.transport import ApduLink
from gateway.errors import DeviceError, DriverError

__all__ = ["DlmsClient"]

#: How long a polite release may take before we just drop the link.
_RELEASE_TIMEOUT_S = 2.0


class DlmsClient:
    """Associates on demand; ``device`` names the meter in errors and logs."""

    def __init__(self, link: ApduLink, settings: AssociationSettings) -> None:
        self.link = link
        self.device = link.device
        self._association = Association(settings, device=link.device)
        #: Seconds the last association took (link set-up included, sign-on aside).
        self.association_s: float | None = None

    @property
    def associated(self) -> bool:
        return self._association.state is State.ASSOCIATED and self.link.is_open

    @property
    def negotiated_pdu_size(self) -> int | None:
        got = self._association.negotiated
        return got.server_max_receive_pdu_size if got is not None else None

    async def associate(self) -> None:
        if self.associated:
            return
        a = self._association
        a.lost()
        try:
            await self.link.open()
            started = time.perf_counter()
            pass3 = a.on_aare(await self.link.exchange(a.request()))
            if pass3 is not None:
                a.on_hls_response(await self.link.exchange(pass3))
            self.association_s = time.perf_counter() - started
        except BaseException:
            await self._drop()
            raise

    async def get(self, attribute: AttributeDescriptor, access: Access | None = None) -> Data:
        """The attribute's value; every block of a block transfer asked for in turn."""
        await self.associate()
        a = self._association
        try:
            request = a.get(attribute, access)
            while True:
                got = a.on_get_response(await self.link.exchange(request))
                if isinstance(got, Value):
                    return got.data
                request = got.request
        except DriverError as exc:
            if not _keeps_association(exc):
                await self._drop()
            raise
        except BaseException:
            await self._drop()
            raise

    async def read_clock(self, obis: Obis, clock: Clock) -> tuple[Data, datetime]:
        """The meter's time (clock attribute 2) and our time it stands against: the
        midpoint of the exchange, as the meter read its clock somewhere between our
        request and its answer (the midpoint halves the error; at 300 baud an answer
        takes half a second). An answer that needed a re-poll may have been read at
        any time in between: it is read once more."""
        stats = self.link.stats
        for _ in range(2):
            repolls = stats.repolls
            asked = clock.now()
            data = await self.get(AttributeDescriptor(CosemClass.CLOCK, obis, 2))
            midpoint = asked + (clock.now() - asked) / 2
            if stats.repolls == repolls:
                break
        return data, midpoint

    async def close(self) -> None:
        """Release the association (RLRQ, best effort), take the link down, close."""
        a = self._association
        try:
            if self.associated:
                async with asyncio.timeout(_RELEASE_TIMEOUT_S):
                    a.on_release(await self.link.exchange(a.release()))
        except (DriverError, TimeoutError):
            pass  # the link goes down below; the meter ends the association with it
        finally:
            await self._drop()

    async def _drop(self) -> None:
        self._association.lost()
        await self.link.close()


def _keeps_association(exc: DriverError) -> bool:
    """A meter's refusal (object undefined, access denied, an exception response) came
    as a whole APDU: link and association stay as they were. Anything else (a timeout,
    broken or unprotected bytes) may have left the exchange half done."""
    return isinstance(exc, DeviceError)
