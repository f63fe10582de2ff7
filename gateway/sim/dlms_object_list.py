"""The simulated meter's association object list (Association LN, class 15, attribute 2).

Blue Book (DLMS UA 1000-1) 4.4.3: an array of ``object_list_element`` structures::

    { class_id: long-unsigned, version: unsigned, logical_name: octet-string(6),
      access_rights: { attribute_access: array of { attribute_id: integer,
                                                     access_mode: enum,
                                                     access_selectors: null-data | array },
                       method_access: array of { method_id: integer, access_mode: enum } } }

Every object the meter serves is listed with read-only attributes (access_mode 1) up to
the highest one it answers; the load profile's buffer lists its selective accesses (1:
by range, 2: by entry); the association's own method 1 (reply_to_HLS_authentication)
is allowed (access_mode 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.cosem import CosemClass, Obis

__all__ = ["CLASS_VERSIONS", "object_list"]

#: The interface class versions of the Blue Book edition the simulator follows.
CLASS_VERSIONS: Final = {CosemClass.DATA: 0, CosemClass.REGISTER: 0,
                         CosemClass.EXTENDED_REGISTER: 0, CosemClass.PROFILE_GENERIC: 1,
                         CosemClass.CLOCK: 0, CosemClass.ASSOCIATION_LN: 2}
_READ_ONLY: Final = 1


def object_list(objects: Iterable[tuple[int, Obis, Iterable[int]]]) -> axdr.Array:
    """``objects``: (class id, logical name, the attribute ids it answers besides 1)."""
    return axdr.Array(tuple(_element(class_id, obis, tuple(attributes))
                            for class_id, obis, attributes in objects))


def _element(class_id: int, obis: Obis, attributes: tuple[int, ...]) -> axdr.Structure:
    last = max((1, *attributes))
    rights = tuple(_attribute(class_id, a) for a in range(1, last + 1))
    methods: tuple[axdr.Data, ...] = ()
    if class_id == CosemClass.ASSOCIATION_LN:
        methods = (axdr.Structure((axdr.Integer(1), axdr.Enum(_READ_ONLY))),)
    return axdr.Structure((
        axdr.LongUnsigned(class_id),
        axdr.Unsigned(CLASS_VERSIONS.get(CosemClass(class_id), 0)),
        axdr.OctetString(obis.to_bytes()),
        axdr.Structure((axdr.Array(rights), axdr.Array(methods))),
    ))


def _attribute(class_id: int, attribute: int) -> axdr.Structure:
    selectors: axdr.Data = axdr.NullData()
    if class_id == CosemClass.PROFILE_GENERIC and attribute == 2:
        selectors = axdr.Array((axdr.Integer(1), axdr.Integer(2)))
    return axdr.Structure((axdr.Integer(attribute), axdr.Enum(_READ_ONLY), selectors))
