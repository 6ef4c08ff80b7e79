"""The one NO_PROXY parser and compiled matcher that every egress component shares.

A value is split on commas and ASCII whitespace; empty tokens are dropped. Each token is
lower-cased and classified (README, "NO_PROXY semantics")::

    token    := "*"                          every host, every port
              | cidr                         addr "/" bits, host bits masked; "/0" = whole family
              | "[" ipv6 "]" [ ":" port ]    bracketed IPv6, optional port
              | ipv4 | ipv6                  bare address (colons in IPv6 are never a port)
              | ipv4 ":" port
              | domain [ ":" port ]
    cidr     := ( ipv4 | ipv6 | "[" ipv6 "]" ) "/" 0-32 or 0-128 (decimal digits only)
    domain   := [ "*." | "." ] name [ "." ]  one leading "*." or "." and one trailing "." dropped
    port     := decimal 1-65535              the entry then matches only that effective port

A domain covers itself and every subdomain at a label boundary, whichever of ``example.com``,
``.example.com`` or ``*.example.com`` is written. Names compare as IDNA A-labels (UTS #46).
IP hosts (IPv4-mapped IPv6 counts as IPv4, zone ids dropped) match IP and CIDR entries
numerically and never a domain entry; a name never matches an IP entry (no DNS). There is no
implicit loopback bypass. Tokens that cannot be read (URLs, partial wildcards such as
``ex*.com``, ``/33``, bad ports, forbidden characters) are kept in ``ignored`` with a reason,
never raised. When several entries match, ``match`` returns the earliest one in input order.

>>> m = NoProxyMatcher.parse("localhost, .Example.COM\\t10.0.0.0/8 [::1]:8443,ex*.com,https://x")
>>> m.match(canonical_host("api.example.com."), 443)
Entry(raw='.Example.COM', kind='domain', value='example.com', port=None)
>>> m.match(canonical_host("notexample.com"), 443) is None
True
>>> m.match(canonical_host("[::ffff:10.1.2.3]"), 80).raw
'10.0.0.0/8'
>>> m.match(canonical_host("[::1]"), 8443).covers_text()
'the address ::1, on port 8443 only'
>>> m.match(canonical_host("::1"), 443) is None
True
>>> [(i.token, i.reason) for i in m.ignored]  # doctest: +NORMALIZE_WHITESPACE
[('ex*.com', 'A partial wildcard never matches; write *.example.com or .example.com to cover a
  domain and its subdomains.'),
 ('https://x', 'A URL is not a NO_PROXY entry; write only the host name, IP address or CIDR
  range.')]
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import idna

__all__ = [
    "DOTTED_QUAD_PATTERN",
    "PLAIN_NAME_PATTERN",
    "Entry",
    "EntryKind",
    "Host",
    "IPAddress",
    "Ignored",
    "NoProxyMatcher",
    "canonical_host",
    "parse_token",
    "split_no_proxy",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Host: TypeAlias = IPAddress | str
EntryKind: TypeAlias = Literal["all", "domain", "ip", "cidr"]

_KINDS: Final = frozenset({"all", "domain", "ip", "cidr"})
_SEPARATORS: Final = re.compile(r"[,\t\n\v\f\r ]+")
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_DIGITS: Final = frozenset("0123456789")
_HEX_DIGITS: Final = frozenset("0123456789abcdef")
_OCT_DIGITS: Final = frozenset("01234567")
_MAX_NAME: Final = 253
_MAX_LABEL: Final = 63
# Fast paths of canonical_host for the hosts seen nearly always: a plain ASCII name whose last
# label starts with a letter (so it cannot be a WHATWG number), and a dotted quad without
# leading zeros. Anything else takes the full path; both give the same answer for these.
PLAIN_NAME_PATTERN: Final = r"(?:[a-z0-9_-]{1,63}+\.)*+[a-z_-][a-z0-9_-]{0,62}+"
"""A lower-case host name that ``canonical_host`` returns as it is (when at most 253 long).

Possessive (a label never holds a dot, so giving characters back never helps): a fifth faster."""
_PLAIN_NAME: Final = re.compile(PLAIN_NAME_PATTERN)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
DOTTED_QUAD_PATTERN: Final = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
"""An IPv4 address written a.b.c.d without leading zeros: ``canonical_host`` reads it as such."""
_DOTTED_QUAD: Final = re.compile(DOTTED_QUAD_PATTERN)
_V4_MAPPED_HIGH: Final = 0xFFFF  # int(::ffff:a.b.c.d) >> 32
_NO_INDEX: Final = sys.maxsize


def _shown(text: str) -> str:
    """``repr`` of a value for a message, cut short so a huge input cannot flood a log line."""
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


def _forbidden_character(text: str) -> str | None:
    """Why ``text`` can never be part of a host (control character or space), or None."""
    if text.isprintable() and " " not in text:
        return None
    for char in text:
        if char in "\r\n":
            return "contains a line break (CR or LF)"
        if unicodedata.category(char) == "Cc":
            return f"contains the control character U+{ord(char):04X}"
        if char.isspace():
            return "contains a space"
    return None


def _canonical_name(name: str) -> str:
    """Lower-case IDNA A-label form of a host name, with one trailing dot removed.

    Raises ValueError with a sentence fragment (no subject) saying what is wrong.
    """
    if name.isascii():
        name = name.lower()
    else:
        try:
            mapped = idna.uts46_remap(name, std3_rules=False)
            name = ".".join(
                label if label.isascii() else idna.alabel(label).decode("ascii")
                for label in mapped.split(".")
            )
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValueError(f"is not a valid internationalised domain name ({exc})") from None
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("is empty")
    bad = set(name) - _NAME_CHARS
    if bad:
        raise ValueError(f"contains {_shown(min(bad))}, which is not allowed in a host name")
    if len(name) > _MAX_NAME:
        raise ValueError(f"is longer than {_MAX_NAME} characters")
    for label in name.split("."):
        if not label:
            raise ValueError("has an empty label (a leading dot or two dots in a row)")
        if len(label) > _MAX_LABEL:
            raise ValueError(f"has a label longer than {_MAX_LABEL} characters")
    return name


def _ends_in_number(name: str) -> bool:
    """WHATWG URL "ends in a number": the last label is decimal digits or 0x-hex."""
    last = name.rpartition(".")[2]
    if last.startswith("0x"):
        return set(last[2:]) <= _HEX_DIGITS
    return set(last) <= _DIGITS


def _whatwg_ipv4(name: str) -> ipaddress.IPv4Address | None:
    """The WHATWG IPv4 parser (``127.1``, ``0x7f.0.0.1``, ``2130706433``), or None if invalid.

    ``getaddrinfo`` reads these spellings the same way, so they are addresses, not names.
    """
    parts = name.split(".")
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        digits, allowed, radix = part, _DIGITS, 10
        if len(part) >= 2 and part.startswith("0x"):
            digits, allowed, radix = part[2:], _HEX_DIGITS, 16
        elif len(part) >= 2 and part.startswith("0"):
            digits, allowed, radix = part[1:], _OCT_DIGITS, 8
        if not set(digits) <= allowed:
            return None
        numbers.append(int(digits, radix) if digits else 0)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for position, number in enumerate(head):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def _ipv6_host(text: str) -> IPAddress | None:
    """An IPv6 literal with any zone id dropped and ``::ffff:a.b.c.d`` turned into IPv4."""
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    if mapped is not None:
        return mapped
    return ipaddress.IPv6Address(int(address)) if address.scope_id is not None else address


def canonical_host(raw: str) -> Host:
    """Canonical form of a URL host: the form ``NoProxyMatcher.match`` expects.

    Brackets are removed, an IPv6 zone id (``%...``) is dropped, ``::ffff:a.b.c.d`` becomes
    IPv4 and IP literals are parsed (the WHATWG forms ``127.1`` and ``0x7f.0.0.1`` included);
    names are lower-cased, lose one trailing dot and become IDNA A-labels (UTS #46).
    Raises ValueError, with a sentence naming the host, for an empty host, control characters,
    spaces, CR/LF, or any character not allowed in a host name.

    >>> canonical_host("[fe80::1%25eth0]"), canonical_host("Bücher.Example.")
    (IPv6Address('fe80::1'), 'xn--bcher-kva.example')
    """
    if raw.isascii():
        low = raw.lower()
        name = low[:-1] if low.endswith(".") else low
        if _PLAIN_NAME.fullmatch(name):
            if len(name) <= _MAX_NAME:
                return name
        elif _DOTTED_QUAD.fullmatch(low):
            # from the packed form: ipaddress parsing the text again costs four times more
            return ipaddress.IPv4Address(socket.inet_aton(low))
    return _canonical_host_full(raw)


def _canonical_host_full(raw: str) -> Host:
    """``canonical_host`` without its fast paths (tests check that both agree)."""
    problem = _forbidden_character(raw) if raw else "is empty"
    if problem is None:
        host = raw
        if host.startswith("["):
            address = _ipv6_host(host[1:-1]) if host.endswith("]") else None
            if address is not None:
                return address
            problem = "is in brackets but is not an IPv6 address"
        elif ":" in host:
            address = _ipv6_host(host)
            if address is not None:
                return address
            problem = "contains ':' but is not an IPv6 address (a port does not belong here)"
        elif "%" in host:
            problem = "contains '%', which is only allowed for the zone id of an IPv6 address"
        else:
            try:
                name = _canonical_name(host)
            except ValueError as exc:
                problem = str(exc)
            else:
                if not _ends_in_number(name):
                    return name
                ipv4 = _whatwg_ipv4(name)
                if ipv4 is not None:
                    return ipv4
                problem = "ends in a number but is not a valid IPv4 address"
    raise ValueError(f"host {_shown(raw)} {problem}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One usable NO_PROXY entry, in canonical form."""

    raw: str
    """The token as written."""
    kind: EntryKind
    value: str
    """Canonical: domain A-label (no leading dot), IP text, or network text like ``10.0.0.0/8``."""
    port: int | None = None
    """When set, the entry matches only this effective port."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"entry kind {self.kind!r} is not one of {sorted(_KINDS)}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"entry port {self.port} is not between 1 and 65535")

    def covers_text(self) -> str:
        """What the entry covers, in a few words, e.g. ``example.com and its subdomains``."""
        if self.kind == "all":
            text = "every host"
        elif self.kind == "domain":
            text = f"{self.value} and its subdomains"
        elif self.kind == "ip":
            text = f"the address {self.value}"
        else:
            text = f"the addresses in {self.value}"
        return text if self.port is None else f"{text}, on port {self.port} only"


@dataclass(frozen=True, slots=True)
class Ignored:
    """A NO_PROXY token that can never match, and why."""

    token: str
    reason: str


# How a compiled matcher indexes an entry: None for "all", the name for a domain, or
# (IP version, prefix length, network as an int) for ip and cidr entries.
_Key: TypeAlias = str | tuple[int, int, int] | None
_Candidates: TypeAlias = tuple[tuple[int, int | None], ...]
"""(position in ``entries``, port or None) of the entries that may cover a host, earliest first."""
_Covering: TypeAlias = int | _Candidates
"""What a domain key holds: the candidates, or the position of the first when it has no port
(it then covers the host on every port: the answer, without a loop)."""
_IPTable: TypeAlias = tuple[tuple[int, dict[int, _Candidates]], ...]

_URL_REASON: Final = (
    "A URL is not a NO_PROXY entry; write only the host name, IP address or CIDR range."
)
_WILDCARD_REASON: Final = (
    "A partial wildcard never matches; write *.example.com or .example.com to cover a domain "
    "and its subdomains."
)


def _sentence(fragment: str, subject: str = "The name") -> str:
    return f"{subject} {fragment}."


def _port(text: str) -> int | None:
    """A decimal port from 1 to 65535, or None."""
    if not text or len(text) > 5 or not set(text) <= _DIGITS:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def _address_key(address: IPAddress) -> tuple[int, int, int]:
    return (address.version, address.max_prefixlen, int(address))


def _network(address: IPAddress, bits: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of ``address/bits`` with host bits masked; mapped IPv6 /96+ becomes IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None and bits >= 96:
            return ipaddress.IPv4Network((mapped, bits - 96), strict=False)
    return ipaddress.ip_network((address, bits), strict=False)


def _bare_ip(text: str) -> IPAddress | None:
    """A strictly written IPv4 or IPv6 address (zone dropped, mapped IPv6 as IPv4), or None."""
    if ":" in text:
        return _ipv6_host(text)
    if not text[-1:].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _classify(token: str) -> tuple[Entry, _Key] | Ignored:
    """Classify one token (already free of separators) into an entry and its index key."""
    text = token.lower()
    if not text:
        return Ignored(token, "The token is empty.")
    if text == "*":
        return Entry(token, "all", "*"), None
    if "://" in text:
        return Ignored(token, _URL_REASON)
    problem = _forbidden_character(text)
    if problem is not None:
        return Ignored(token, _sentence(problem, "The token"))

    if "/" in text:
        return _classify_cidr(token, text)

    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        address = _ipv6_host(inside) if bracket else None
        if address is None:
            return Ignored(token, "Brackets must hold an IPv6 address, as in [::1] or [::1]:8443.")
        port = None
        if rest:
            if not rest.startswith(":"):
                return Ignored(token, "Only ':port' may follow the closing bracket.")
            port = _port(rest[1:])
            if port is None:
                return Ignored(token, "The port must be a number from 1 to 65535.")
        return Entry(token, "ip", str(address), port), _address_key(address)

    address = _bare_ip(text)
    if address is not None:
        return Entry(token, "ip", str(address)), _address_key(address)

    name, port = text, None
    if ":" in text:
        name, _, port_text = text.partition(":")
        if ":" in port_text:
            return Ignored(token, "The token has several ':' but is not an IPv6 address.")
        port = _port(port_text)
        if port is None:
            return Ignored(token, "The port must be a number from 1 to 65535.")
        if not name:
            return Ignored(token, "There is no host before the port.")
        ipv4 = _bare_ip(name)
        if ipv4 is not None:
            return Entry(token, "ip", str(ipv4), port), _address_key(ipv4)
    return _classify_domain(token, name, port)


def _classify_cidr(token: str, text: str) -> tuple[Entry, _Key] | Ignored:
    address_text, _, bits_text = text.partition("/")
    if address_text.startswith("[") and address_text.endswith("]"):
        address_text = address_text[1:-1]
        address = _ipv6_host(address_text)
    else:
        address = _bare_ip(address_text)
    if address is None:
        return Ignored(token, "The text before '/' is not an IPv4 or IPv6 address.")
    # The prefix is read from the address as written: ::ffff:10.0.0.0/104 is an IPv6 prefix.
    max_bits = 128 if ":" in address_text else 32
    if not bits_text or len(bits_text) > 3 or not set(bits_text) <= _DIGITS:
        return Ignored(token, f"The prefix length must be a number from 0 to {max_bits}.")
    bits = int(bits_text)
    if bits > max_bits:
        return Ignored(token, f"The prefix length must be a number from 0 to {max_bits}.")
    if max_bits == 128 and isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address((0xFFFF << 32) | int(address))
    network = _network(address, bits)
    key = (network.version, network.prefixlen, int(network.network_address))
    return Entry(token, "cidr", str(network)), key


def _classify_domain(token: str, name: str, port: int | None) -> tuple[Entry, _Key] | Ignored:
    if name.startswith("*."):
        name = name[2:]
    elif name.startswith("."):
        name = name[1:]
    if name in ("", "."):
        return Ignored(token, "Nothing is left once the leading '.' or '*.' is removed.")
    if "*" in name:
        return Ignored(token, _WILDCARD_REASON)
    if "[" in name or "]" in name:
        return Ignored(token, "Brackets may only hold an IPv6 address, as in [::1].")
    if name.startswith("."):
        return Ignored(token, "A name may start with at most one dot.")
    try:
        name = _canonical_name(name)
    except ValueError as exc:
        return Ignored(token, _sentence(str(exc)))
    if _ends_in_number(name):
        return Ignored(
            token,
            "It ends in a number but is not an IPv4 address written a.b.c.d; "
            "write the full address or a CIDR range such as 10.0.0.0/8.",
        )
    return Entry(token, "domain", name, port), name


def split_no_proxy(value: str | Iterable[str]) -> list[str]:
    """The tokens of a NO_PROXY value, or of several values: the one tokenizer of egress.

    Split on commas and ASCII whitespace (space, tab, CR, LF, VT, FF), empty tokens dropped, as
    curl and Go split. Settings, the environment loader and the matcher all call this, so they
    always agree on what the entries are. Any other space (U+00A0 no-break space, U+3000) is
    *not* a separator: it stays inside its token, which the matcher then ignores with a reason
    (a space cannot be part of a host), rather than silently splitting an entry in two.

    >>> split_no_proxy("localhost, .corp.example\t10.0.0.0/8,,")
    ['localhost', '.corp.example', '10.0.0.0/8']
    >>> split_no_proxy(["a.example,b.example", "c.example\u00a0d.example"])
    ['a.example', 'b.example', 'c.example\xa0d.example']
    """
    items = (value,) if isinstance(value, str) else value
    return [token for item in items for token in _SEPARATORS.split(item) if token]


def parse_token(token: str) -> Entry | Ignored:
    """Classify one NO_PROXY token (surrounding ASCII whitespace is ignored).

    >>> parse_token("*.Example.com:8443")
    Entry(raw='*.Example.com:8443', kind='domain', value='example.com', port=8443)
    >>> parse_token("10.1.2.3/8").value, parse_token("10.0.0.0/33").reason
    ('10.0.0.0/8', 'The prefix length must be a number from 0 to 32.')
    """
    result = _classify(token.strip(" \t\n\v\f\r"))
    return result if isinstance(result, Ignored) else result[0]


def _key_for(entry: Entry) -> _Key:
    """The index key of a hand-made entry; ValueError unless its value is canonical."""
    if entry.kind == "all":
        if entry.value != "*":
            raise ValueError(f"an 'all' entry must have the value '*', not {entry.value!r}")
        return None
    if entry.kind == "domain":
        try:
            name = _canonical_name(entry.value)
        except ValueError as exc:
            raise ValueError(f"domain entry {entry.value!r} {exc}") from None
        if name != entry.value or _ends_in_number(name):
            raise ValueError(f"domain entry {entry.value!r} is not in canonical form")
        return name
    try:
        if entry.kind == "ip":
            address = ipaddress.ip_address(entry.value)
            if str(address) != entry.value or (
                isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
            ):
                raise ValueError("not canonical")
            return _address_key(address)
        network = ipaddress.ip_network(entry.value, strict=False)
        if str(network) != entry.value:
            raise ValueError("not canonical")
        return (network.version, network.prefixlen, int(network.network_address))
    except ValueError:
        raise ValueError(
            f"{entry.kind} entry {entry.value!r} is not a canonical "
            f"{'address' if entry.kind == 'ip' else 'network'}"
        ) from None


class NoProxyMatcher:
    """A compiled, immutable NO_PROXY list: ``match`` costs a few hash lookups at any size.

    Domains sit in a dict keyed by every listed name and each of its parents, holding the entries
    that cover it (its own and its parents'), so a host's deepest listed suffix answers: found
    in two lookups (its parent, then itself) for most hosts. IP and CIDR entries sit in one
    dict per distinct prefix length, keyed by the masked address. ``entries`` keeps input
    order without duplicates; ``ignored`` says which tokens can never match, and why.
    """

    __slots__ = (
        "_all_index",
        "_domains",
        "_fallback",
        "_v4",
        "_v6",
        "entries",
        "ignored",
    )

    entries: tuple[Entry, ...]
    ignored: tuple[Ignored, ...]
    _all_index: int
    _fallback: int
    _domains: dict[str, _Covering]
    _v4: _IPTable
    _v6: _IPTable

    def __init__(self, entries: Iterable[Entry] = (), ignored: Iterable[Ignored] = ()) -> None:
        """Compile ``entries``; ValueError if one is not in canonical form."""
        self._compile(((entry, _key_for(entry)) for entry in entries), ignored)

    @classmethod
    def parse(cls, value: str | Iterable[str]) -> NoProxyMatcher:
        """Compile a NO_PROXY value, or an iterable of values (each may itself be a list)."""
        pairs: list[tuple[Entry, _Key]] = []
        ignored: list[Ignored] = []
        for token in split_no_proxy(value):
            result = _classify(token)
            if isinstance(result, Ignored):
                ignored.append(result)
            else:
                pairs.append(result)
        matcher = cls.__new__(cls)
        matcher._compile(pairs, ignored)
        return matcher

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> NoProxyMatcher:
        """Compile entries built elsewhere; ValueError if one is not in canonical form."""
        return cls(entries)

    def _compile(self, pairs: Iterable[tuple[Entry, _Key]], ignored: Iterable[Ignored]) -> None:
        seen: set[tuple[str, str, int | None]] = set()
        entries: list[Entry] = []
        all_entry: Entry | None = None
        all_index = _NO_INDEX
        domains: dict[str, list[tuple[int, int | None]]] = {}
        networks: dict[int, dict[int, dict[int, list[tuple[int, int | None]]]]] = {
            4: {},
            6: {},
        }
        for entry, key in pairs:
            identity = (entry.kind, entry.value, entry.port)
            if identity in seen:
                continue
            seen.add(identity)
            index = len(entries)
            entries.append(entry)
            candidate = (index, entry.port)
            if key is None:
                if all_entry is None:
                    all_entry, all_index = entry, index
            elif isinstance(key, str):
                domains.setdefault(key, []).append(candidate)
            else:
                version, bits, network = key
                by_bits = networks[version].setdefault(bits, {})
                by_bits.setdefault(network, []).append(candidate)

        def table(version: int) -> _IPTable:
            width = 32 if version == 4 else 128
            return tuple(
                (((1 << bits) - 1) << (width - bits), {n: tuple(c) for n, c in nets.items()})
                for bits, nets in sorted(networks[version].items(), reverse=True)
            )

        setattr_ = object.__setattr__
        setattr_(self, "entries", tuple(entries))
        setattr_(self, "ignored", tuple(ignored))
        # the position of the first "*" entry, past which no candidate can win, and the answer
        # when no other entry matches (-1: none)
        setattr_(self, "_all_index", all_index)
        setattr_(self, "_fallback", all_index if all_entry is not None else -1)
        # Every parent of a domain entry is a key too, and each key holds the candidates of its
        # own entries and of all its parents' entries, in input order. So the deepest key that
        # is a suffix of a host holds every domain entry covering it, and a walk up the host's
        # labels can stop at the first suffix that is not a key: nothing listed lies below.
        by_suffix: dict[str, list[tuple[int, int | None]]] = {}
        for name in domains:
            dot = name.find(".")
            while dot >= 0:
                by_suffix.setdefault(name[dot + 1 :], [])
                dot = name.find(".", dot + 1)
        for name, candidates in domains.items():
            by_suffix[name] = candidates
        folded: dict[str, _Candidates] = {}
        for name in sorted(by_suffix, key=lambda n: n.count(".")):  # parents first
            dot = name.find(".")
            inherited = folded[name[dot + 1 :]] if dot >= 0 else ()
            # an entry after the first "*" can never be the earliest match: it is left out
            candidates = sorted((*inherited, *by_suffix[name]), key=lambda c: c[0])
            folded[name] = tuple(c for c in candidates if c[0] < all_index)
        setattr_(
            self,
            "_domains",
            {
                name: found[0][0] if found and found[0][1] is None else found
                for name, found in folded.items()
            },
        )
        setattr_(self, "_v4", table(4))
        setattr_(self, "_v6", table(6))

    def match(self, host: Host, port: int | None) -> Entry | None:
        """The earliest entry covering ``host`` (from ``canonical_host``) on ``port``, or None.

        ``port`` is the effective port (scheme default included); None means unknown, and then
        entries with a port never match.
        """
        index = self.index(host, port)
        return self.entries[index] if index >= 0 else None

    def index(self, host: Host, port: int | None) -> int:
        """``match`` as the position of the entry in ``entries``, or -1 when none matches.

        The router keys what it derives from an entry on this number (no ``id``, no tuple).
        """
        if type(host) is str:
            return self.name_index(host, port)
        number = int(host)
        if isinstance(host, ipaddress.IPv6Address):
            if number >> 32 != _V4_MAPPED_HIGH:
                return self._ip_index(self._v6, number, port)
            number &= 0xFFFFFFFF
        return self._ip_index(self._v4, number, port)

    def name_index(self, name: str, port: int | None) -> int:
        """``index`` for a host name in canonical form (as ``canonical_host`` returns it)."""
        domains = self._domains
        # partition, not find and a slice: a third cheaper (find parses its arguments slowly)
        parent = name.partition(".")[2]
        if not parent:
            found = domains.get(name)
        else:
            # Most hosts are one label under a listed name (or its parent): try the parent,
            # then the host itself, which holds the parent's candidates too.
            found = domains.get(parent)
            if found is not None:
                found = domains.get(name, found)
            else:
                # The deepest key is a suffix of the parent, shorter than it: walk the
                # suffixes from the right ("com", "example.com", ...) to the deepest that is a
                # key, one hash lookup per label of the longest listed name above the host.
                end = len(parent)
                while True:
                    cut = parent.rfind(".", 0, end)
                    if cut < 0:
                        break  # the next suffix is the parent, which is no key
                    deeper = domains.get(parent[cut + 1 :])
                    if deeper is None:
                        break
                    found = deeper
                    end = cut
        if found is None:
            return self._fallback
        if isinstance(found, int):
            return found
        # candidates later than a "*" entry were dropped when compiling
        for index, entry_port in found:
            if entry_port is None or entry_port == port:
                return index
        return self._fallback

    def ipv4_index(self, number: int, port: int | None) -> int:
        """``index`` for an IPv4 address given as its 32-bit number."""
        return self._ip_index(self._v4, number, port)

    def _ip_index(self, table: _IPTable, number: int, port: int | None) -> int:
        best = self._fallback
        limit = self._all_index
        for mask, networks in table:
            found = networks.get(number & mask)
            if found is not None:
                for index, entry_port in found:
                    if index >= limit:
                        break
                    if entry_port is None or entry_port == port:
                        best = limit = index
                        break
        return best

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"NoProxyMatcher is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"NoProxyMatcher is immutable; cannot delete {name!r}")

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __repr__(self) -> str:
        shown = ", ".join(repr(entry.raw) for entry in self.entries[:5])
        more = f", ... {len(self.entries) - 5} more" if len(self.entries) > 5 else ""
        return f"NoProxyMatcher([{shown}{more}], ignored={len(self.ignored)})"
