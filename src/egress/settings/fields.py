"""Field readers: each reads one raw value and records a Problem instead of raising.

Every loader reads its input with these, so all problems come out at once, each naming its field,
and a value is only ever echoed through :func:`egress.redact.shown` (bounded, masked, escaped).

>>> p = Problems()
>>> port("3128", "proxy.port", p), port(10**4000, "proxy.port", p)
(3128, None)
>>> print(p.errors[0])
proxy.port: a 4001-digit number is not a port (use a number between 1 and 65535)
>>> text_list("a.example, b.example\\u00a0c.example", "excluded_domains", p)
['a.example', 'b.example\\xa0c.example']
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from egress.errors import Problem
from egress.noproxy import split_no_proxy
from egress.redact import printable, shown

MAX_ITEM_PROBLEMS: Final = 10
"""A list reports at most this many bad items, then one line counting the rest."""
MAX_KEY_SHOWN: Final = 60
"""A key echoed in a field name is cut to this many characters."""
_LARGEST_NUMBER: Final = 10**20
"""Numbers this large or larger are never a valid value of any setting."""


class Problems:
    """Errors and warnings found while reading one input, raised together by ``finish``."""

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, fld: str, message: str, hint: str = "") -> None:
        self.errors.append(Problem(fld, message, hint))

    def warn(self, fld: str, message: str, hint: str = "") -> None:
        self.warnings.append(Problem(fld, message, hint))


def key_field(prefix: str, key: object) -> str:
    """The field name for a key the input chose: escaped and bounded, so it cannot forge output.

    >>> key_field("resolve.", "db\\r\\nerror: forged")
    'resolve.db\\\\r\\\\nerror: forged'
    """
    text = printable(key) if isinstance(key, str) else shown(key)
    if len(text) > MAX_KEY_SHOWN:
        text = text[: MAX_KEY_SHOWN - 3] + "..."
    return f"{prefix}{text}"


def has_space_or_control(text: str) -> bool:
    """True when ``text`` holds any whitespace (ASCII or not) or a control character."""
    return not text.isprintable() or any(c.isspace() for c in text)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def boolean(value: object, fld: str, p: Problems, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    p.error(fld, f"{shown(value)} is not true or false", "write true or false")
    return default


def text(value: object, fld: str, p: Problems) -> str | None:
    """A single text value, stripped; a number is read as its digits (``port: 3128``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        if -_LARGEST_NUMBER < value < _LARGEST_NUMBER:
            return str(value)
        p.error(fld, f"{shown(value)} is too large for this setting", "write a single text value")
        return None
    if isinstance(value, float):
        return str(value)
    p.error(fld, f"{shown(value)} is not a string", "write a single text value")
    return None


def text_list(value: object, fld: str, p: Problems) -> list[str] | None:
    """A list of strings, or one comma-separated string, or a list whose items hold commas.

    Split with :func:`egress.noproxy.split_no_proxy`, the tokenizer the matcher uses.
    """
    if value is None:
        return None
    items: list[object] = [value] if isinstance(value, str) else value  # type: ignore[assignment]
    if not isinstance(items, list | tuple):
        p.error(
            fld, f"{shown(value)} is not a list", "write a YAML list or a comma-separated string"
        )
        return None
    out: list[str] = []
    bad = 0
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.extend(split_no_proxy(item))
            continue
        bad += 1
        if bad <= MAX_ITEM_PROBLEMS:
            p.error(f"{fld}[{i}]", f"{shown(item)} is not a string", "write each entry as text")
    if bad > MAX_ITEM_PROBLEMS:
        more = bad - MAX_ITEM_PROBLEMS
        p.error(fld, f"{more} more entries are not strings", "write each entry as text")
    return out


def mapping(value: object, fld: str, p: Problems, example: str = "") -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return value
    hint = f"write key: value pairs, e.g. {example}" if example else "write key: value pairs"
    p.error(fld or "settings", f"{shown(value)} is not a mapping", hint)
    return {}


def unknown_keys(m: Mapping[str, Any], known: Iterable[str], prefix: str, p: Problems) -> None:
    known = list(known)
    for key in m:
        if key not in known:
            p.error(
                key_field(prefix, key),
                "is not a known setting",
                f"known settings here: {', '.join(known)}",
            )


def port(value: object, fld: str, p: Problems) -> int | None:
    """A TCP port from 1 to 65535 (a number, or its decimal digits as text)."""
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit() and len(digits) <= 5:
            number = int(digits)
    if number is not None and 1 <= number <= 65535:
        return number
    p.error(fld, f"{shown(value)} is not a port", "use a number between 1 and 65535")
    return None


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def valid_host(host: str) -> bool:
    """An IP address, or a host name whose labels are letters, digits, ``-`` and ``_``."""
    if len(host) > 253:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_host) <= 253 and all(_LABEL.fullmatch(lbl) for lbl in ascii_host.split("."))


def valid_dns_name(name: str) -> bool:
    """A DNS name made of letters, digits and hyphens (the cluster domain)."""
    return len(name) <= 253 and all(_DNS_LABEL.fullmatch(lbl) for lbl in name.split("."))


def is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False
