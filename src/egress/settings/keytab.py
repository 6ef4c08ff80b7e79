"""Reading the principals a Kerberos keytab holds, without a Kerberos library (for validation).

The MIT keytab file format (version 0x0502, big-endian; 0x0501 is native-endian and read as
little-endian): a 2-byte version, then records, each a signed 32-bit length (negative: a hole)
and an entry: component count, realm, components, name type, timestamp, key version, key.

>>> import struct
>>> def s(t): return struct.pack(">H", len(t)) + t
>>> entry = struct.pack(">H", 1) + s(b"EGRESS.TEST") + s(b"alice") + b"\\0" * 9
>>> principals(b"\\x05\\x02" + struct.pack(">i", len(entry)) + entry)
['alice@EGRESS.TEST']
"""

from __future__ import annotations

import struct
from typing import Final

KEYTAB_LIMIT: Final = 1024 * 1024
"""A keytab larger than this is refused: a client keytab holds a few keys."""


def principals(data: bytes) -> list[str] | None:
    """The principals (``name/inst@REALM``) of a keytab's entries, or None if it is not one."""
    if len(data) < 2 or data[0] != 5 or data[1] not in (1, 2):
        return None
    order = ">" if data[1] == 2 else "<"
    out: list[str] = []
    at = 2
    try:
        while at + 4 <= len(data):
            (size,) = struct.unpack_from(order + "i", data, at)
            at += 4
            if size < 0:
                at += -size
                continue
            entry, at = data[at : at + size], at + size
            if len(entry) < size:
                return None
            (count,) = struct.unpack_from(order + "H", entry, 0)
            if data[1] == 1:
                count -= 1  # version 1 counts the realm too
            realm, pos = _counted(entry, 2, order)
            parts = []
            for _ in range(count):
                part, pos = _counted(entry, pos, order)
                parts.append(part)
            out.append("/".join(parts) + "@" + realm)
    except (struct.error, UnicodeDecodeError):
        return None
    return out


def _counted(entry: bytes, at: int, order: str) -> tuple[str, int]:
    (length,) = struct.unpack_from(order + "H", entry, at)
    at += 2
    if at + length > len(entry):
        raise struct.error("a name runs past its entry")
    return entry[at : at + length].decode("utf-8"), at + length


def holds(found: list[str], principal: str) -> bool:
    """True when ``principal`` (with or without ``@REALM``) is among ``found``.

    >>> holds(["alice@EGRESS.TEST"], "alice"), holds(["alice@EGRESS.TEST"], "bob@EGRESS.TEST")
    (True, False)
    """
    if "@" in principal:
        return principal in found
    return any(p.rpartition("@")[0] == principal for p in found)
