"""NO_PROXY parsing and matching (README, "NO_PROXY semantics")."""

from __future__ import annotations

import dataclasses
import ipaddress
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress.noproxy import (
    Entry,
    Ignored,
    NoProxyMatcher,
    canonical_host,
    parse_token,
)

# (no_proxy, host as in a URL, effective port, raw token of the entry that must match or None, id)
ROWS: list[tuple[str, str, int | None, str | None, str]] = [
    # Label boundaries.
    ("example.com", "example.com", 443, "example.com", "apex"),
    ("example.com", "www.example.com", 443, "example.com", "subdomain"),
    ("example.com", "a.b.c.example.com", 443, "example.com", "deep-subdomain"),
    ("example.com", "notexample.com", 443, None, "no-label-boundary"),
    ("example.com", "xexample.com", 443, None, "one-char-prefix"),
    ("example.com", "www-example.com", 443, None, "hyphen-not-a-boundary"),
    ("example.com", "example.com.evil.net", 443, None, "entry-as-prefix"),
    ("example.com", "example.co", 443, None, "shorter-host"),
    ("example.com", "com", 443, None, "parent-tld"),
    ("b.example.com", "example.com", 443, None, "entry-deeper-than-host"),
    ("b.example.com", "a.example.com", 443, None, "sibling"),
    # "*" alone, in a list, padded.
    ("*", "example.com", 443, "*", "star-name"),
    ("*", "10.0.0.1", 80, "*", "star-ipv4"),
    ("*", "[::1]", 8443, "*", "star-ipv6"),
    ("*", "example.com", None, "*", "star-unknown-port"),
    ("a.com,*,b.com", "anything.org", 443, "*", "star-in-list"),
    (" * ", "anything.org", 443, "*", "star-padded"),
    ("a.com\t*\n", "anything.org", 443, "*", "star-tab-newline"),
    ("a.com,*", "a.com", 443, "a.com", "earliest-entry-before-star"),
    ("**", "example.com", 443, None, "double-star-ignored"),
    # Leading dot and "*." prefix.
    (".example.com", "example.com", 443, ".example.com", "dot-covers-apex"),
    (".example.com", "www.example.com", 443, ".example.com", "dot-subdomain"),
    (".example.com", "notexample.com", 443, None, "dot-boundary"),
    ("..example.com", "www.example.com", 443, None, "two-dots-ignored"),
    ("*.example.com", "example.com", 443, "*.example.com", "star-dot-covers-apex"),
    ("*.example.com", "a.b.example.com", 443, "*.example.com", "star-dot-deep"),
    ("*.example.com", "notexample.com", 443, None, "star-dot-boundary"),
    ("*.*.example.com", "a.b.example.com", 443, None, "double-star-dot-ignored"),
    (".*.example.com", "a.example.com", 443, None, "dot-star-ignored"),
    # Partial wildcards never match.
    ("*example.com", "notexample.com", 443, None, "partial-star-prefix"),
    ("*example.com", "example.com", 443, None, "partial-star-apex"),
    ("ex*.com", "example.com", 443, None, "partial-star-middle"),
    ("example.*", "example.com", 443, None, "partial-star-tld"),
    ("*.", "example.com", 443, None, "star-dot-alone"),
    (".", "example.com", 443, None, "dot-alone"),
    # Trailing dots on entries and hosts.
    ("example.com.", "example.com", 443, "example.com.", "entry-trailing-dot"),
    ("example.com", "example.com.", 443, "example.com", "host-trailing-dot"),
    ("example.com.", "www.example.com.", 443, "example.com.", "both-trailing-dots"),
    (".example.com.", "www.example.com", 443, ".example.com.", "dot-and-trailing-dot"),
    ("example.com..", "example.com", 443, None, "two-trailing-dots-ignored"),
    # Case.
    ("EXAMPLE.COM", "www.example.com", 443, "EXAMPLE.COM", "upper-entry"),
    ("example.com", "WWW.Example.COM", 443, "example.com", "upper-host"),
    ("*.ExAmple.Com", "API.EXAMPLE.COM", 443, "*.ExAmple.Com", "mixed-case"),
    # IPv4 literals.
    ("10.0.0.1", "10.0.0.1", 80, "10.0.0.1", "ipv4-exact"),
    ("10.0.0.1", "10.0.0.2", 80, None, "ipv4-other"),
    ("10.0.0.1", "110.0.0.1", 80, None, "ipv4-not-suffix"),
    ("10.0.0.1", "10.0.0.10", 80, None, "ipv4-not-prefix"),
    ("0.0.1", "10.0.0.1", 80, None, "partial-ipv4-never-suffix"),
    ("10.0.0", "10.0.0.1", 80, None, "partial-ipv4-never-prefix"),
    ("127.0.0.0/8", "127.1", 80, "127.0.0.0/8", "whatwg-short-ipv4-host"),
    ("127.0.0.1", "0x7f.0.0.1", 80, "127.0.0.1", "whatwg-hex-ipv4-host"),
    ("127.0.0.1", "2130706433", 80, "127.0.0.1", "whatwg-number-ipv4-host"),
    # IPv6 literals, bare and bracketed.
    ("::1", "[::1]", 443, "::1", "ipv6-bare-entry"),
    ("::1", "::1", 443, "::1", "ipv6-bare-host"),
    ("[::1]", "[::1]", 443, "[::1]", "ipv6-bracketed-entry"),
    ("::1", "[0:0:0:0:0:0:0:1]", 443, "::1", "ipv6-numeric-compare"),
    ("2001:db8::1", "[2001:DB8:0::1]", 443, "2001:db8::1", "ipv6-case-and-zeros"),
    ("[2001:db8::1]", "[2001:0db8:0000::0001]", 443, "[2001:db8::1]", "ipv6-leading-zeros"),
    ("2001:db8::1", "[2001:db8::2]", 443, None, "ipv6-other"),
    ("::1", "127.0.0.1", 443, None, "ipv6-loopback-not-ipv4"),
    ("[1.2.3.4]", "1.2.3.4", 443, None, "bracketed-ipv4-ignored"),
    # IPv4-mapped IPv6 counts as IPv4.
    ("10.0.0.1", "[::ffff:10.0.0.1]", 80, "10.0.0.1", "mapped-host-ipv4-entry"),
    ("10.0.0.0/8", "[::ffff:10.1.2.3]", 80, "10.0.0.0/8", "mapped-host-ipv4-cidr"),
    ("::ffff:10.0.0.1", "10.0.0.1", 80, "::ffff:10.0.0.1", "mapped-entry-ipv4-host"),
    ("::ffff:a00:1", "10.0.0.1", 80, "::ffff:a00:1", "mapped-entry-hex-form"),
    ("::ffff:10.0.0.0/104", "10.9.9.9", 80, "::ffff:10.0.0.0/104", "mapped-cidr"),
    ("::ffff:10.0.0.0/104", "11.0.0.1", 80, None, "mapped-cidr-outside"),
    # Zone ids are dropped; a zone never turns an IP into a name (CVE-2025-22870).
    ("fe80::1", "[fe80::1%25eth0]", 443, "fe80::1", "zone-dropped"),
    ("fe80::/10", "[fe80::1%eth0]", 443, "fe80::/10", "zone-cidr"),
    ("fe80::1%eth0", "[fe80::1]", 443, "fe80::1%eth0", "zone-in-entry-dropped"),
    ("example.com", "[1000::1%25.example.com]", 443, None, "cve-2025-22870-bracketed"),
    ("example.com", "1000::1%.example.com", 443, None, "cve-2025-22870-bare"),
    (".example.com", "[1000::1%.example.com]", 443, None, "cve-2025-22870-dot-entry"),
    ("*", "[1000::1%.example.com]", 443, "*", "zone-host-still-matches-star"),
    # CIDR, IPv4.
    ("10.0.0.0/8", "10.255.255.255", 80, "10.0.0.0/8", "cidr4-last"),
    ("10.0.0.0/8", "11.0.0.0", 80, None, "cidr4-outside"),
    ("192.168.1.0/24", "192.168.1.200", 80, "192.168.1.0/24", "cidr4-24"),
    ("192.168.1.0/24", "192.168.2.1", 80, None, "cidr4-24-outside"),
    ("10.1.2.3/8", "10.200.0.1", 80, "10.1.2.3/8", "cidr4-host-bits-masked"),
    ("192.168.1.77/24", "192.168.1.1", 80, "192.168.1.77/24", "cidr4-host-bits-24"),
    ("10.0.0.5/32", "10.0.0.5", 80, "10.0.0.5/32", "cidr4-32"),
    ("10.0.0.5/32", "10.0.0.6", 80, None, "cidr4-32-other"),
    ("0.0.0.0/0", "8.8.8.8", 80, "0.0.0.0/0", "cidr4-zero-everything"),
    ("0.0.0.0/0", "[2001:db8::1]", 80, None, "cidr4-zero-not-ipv6"),
    ("0.0.0.0/0", "example.com", 80, None, "cidr4-zero-not-names"),
    ("10.0.0.0/33", "10.0.0.1", 80, None, "cidr4-33-ignored"),
    ("10.0.0.0/abc", "10.0.0.1", 80, None, "cidr4-abc-ignored"),
    ("10.0.0.0/-1", "10.0.0.1", 80, None, "cidr4-negative-ignored"),
    ("10.0.0.0/", "10.0.0.1", 80, None, "cidr4-empty-prefix-ignored"),
    ("10.0.0.0/8/8", "10.0.0.1", 80, None, "cidr4-two-slashes-ignored"),
    ("/8", "10.0.0.1", 80, None, "cidr-no-address-ignored"),
    ("example.com/8", "example.com", 80, None, "cidr-name-ignored"),
    # CIDR, IPv6.
    ("2001:db8::/32", "[2001:db8:ffff::1]", 443, "2001:db8::/32", "cidr6-inside"),
    ("2001:db8::/32", "[2001:db9::1]", 443, None, "cidr6-outside"),
    ("[2001:db8::]/32", "[2001:db8::5]", 443, "[2001:db8::]/32", "cidr6-bracketed"),
    ("2001:db8::1/64", "[2001:db8::ffff]", 443, "2001:db8::1/64", "cidr6-host-bits"),
    ("fd00::/8", "[fdff::1]", 443, "fd00::/8", "cidr6-8"),
    ("::/0", "[2001:db8::1]", 443, "::/0", "cidr6-zero-everything"),
    ("::/0", "10.0.0.1", 443, None, "cidr6-zero-not-ipv4"),
    ("2001:db8::/129", "[2001:db8::1]", 443, None, "cidr6-129-ignored"),
    ("2001:db8::/x", "[2001:db8::1]", 443, None, "cidr6-abc-ignored"),
    # Ports: only the effective port (scheme default passed explicitly).
    ("example.com:8443", "example.com", 8443, "example.com:8443", "port-equal"),
    ("example.com:8443", "example.com", 443, None, "port-differs"),
    ("example.com:443", "example.com", 443, "example.com:443", "port-https-default"),
    ("example.com:80", "example.com", 80, "example.com:80", "port-http-default"),
    ("example.com:80", "example.com", 443, None, "port-http-entry-https-url"),
    ("example.com:443", "www.example.com", 443, "example.com:443", "port-subdomain"),
    (".example.com:8443", "api.example.com", 8443, ".example.com:8443", "port-dot"),
    ("example.com:443", "example.com", None, None, "port-entry-unknown-port"),
    ("example.com", "example.com", None, "example.com", "portless-entry-unknown-port"),
    ("example.com:8443,example.com", "example.com", 443, "example.com", "port-then-plain"),
    ("10.0.0.1:8080", "10.0.0.1", 8080, "10.0.0.1:8080", "ipv4-port-equal"),
    ("10.0.0.1:8080", "10.0.0.1", 80, None, "ipv4-port-differs"),
    ("[::1]:8443", "[::1]", 8443, "[::1]:8443", "ipv6-port-equal"),
    ("[::1]:8443", "[::1]", 443, None, "ipv6-port-differs"),
    ("[::1]:8443", "::1", None, None, "ipv6-port-unknown"),
    ("::1:8443", "[::1:8443]", 443, "::1:8443", "bare-ipv6-colons-never-port"),
    ("::1:8443", "[::1]", 8443, None, "bare-ipv6-not-host-port"),
    ("example.com:0", "example.com", 443, None, "port-0-ignored"),
    ("example.com:65536", "example.com", 443, None, "port-65536-ignored"),
    ("example.com:https", "example.com", 443, None, "port-name-ignored"),
    (":8080", "example.com", 8080, None, "port-without-host-ignored"),
    ("[::1]:0", "[::1]", 443, None, "ipv6-port-0-ignored"),
    # IDNA, both directions.
    ("bücher.example", "xn--bcher-kva.example", 443, "bücher.example", "idna-u-entry"),
    ("xn--bcher-kva.example", "bücher.example", 443, "xn--bcher-kva.example", "idna-a-entry"),
    ("BÜCHER.example", "www.bücher.example", 443, "BÜCHER.example", "idna-upper-u"),
    ("*.bücher.example", "shop.xn--bcher-kva.example", 443, "*.bücher.example", "idna-star"),
    ("bücher.example", "bucher.example", 443, None, "idna-not-ascii-folded"),
    ("ｅｘａｍｐｌｅ.com", "example.com", 443, "ｅｘａｍｐｌｅ.com", "uts46-fullwidth-entry"),
    ("straße.de", "xn--strae-oqa.de", 443, "straße.de", "idna-nontransitional"),
    # Separators and empty tokens.
    ("a.com b.com", "b.com", 443, "b.com", "space-separator"),
    ("a.com\tb.com", "b.com", 443, "b.com", "tab-separator"),
    ("a.com\nb.com", "b.com", 443, "b.com", "newline-separator"),
    ("a.com\r\nb.com", "b.com", 443, "b.com", "crlf-separator"),
    ("a.com,,b.com", "b.com", 443, "b.com", "empty-token"),
    (",,,a.com,", "a.com", 443, "a.com", "leading-trailing-commas"),
    ("  a.com ,  b.com  ", "b.com", 443, "b.com", "padded-tokens"),
    ("", "a.com", 443, None, "empty-value"),
    (" , \t", "a.com", 443, None, "only-separators"),
    ("a.com,\u00a0b.com", "b.com", 443, None, "nbsp-is-not-a-separator"),
    # Tokens with "://" are ignored.
    ("http://example.com", "example.com", 443, None, "url-token"),
    ("https://example.com:443", "example.com", 443, None, "url-token-port"),
    ("socks5://10.0.0.1", "10.0.0.1", 443, None, "url-token-ip"),
    # Names never match IP entries and IPs never match domain entries; no DNS, no loopback.
    ("10.0.0.0/8", "10.0.0.1.nip.io", 443, None, "name-never-cidr"),
    ("1.2.3.4", "1.2.3.4.example.com", 443, None, "name-never-ip"),
    ("example.com", "93.184.216.34", 443, None, "ip-never-domain"),
    ("localhost", "127.0.0.1", 443, None, "no-dns-localhost"),
    ("127.0.0.1", "localhost", 443, None, "no-dns-loopback-ip"),
    ("", "localhost", 443, None, "no-implicit-localhost"),
    ("", "[::1]", 443, None, "no-implicit-ipv6-loopback"),
    ("4", "1.2.3.4", 443, None, "number-token-never-suffix"),
    # localhost covers *.localhost.
    ("localhost", "localhost", 443, "localhost", "localhost"),
    ("localhost", "foo.localhost", 443, "localhost", "sub-localhost"),
    ("localhost", "localhost.example.com", 443, None, "localhost-prefix"),
    ("localhost", "notlocalhost", 443, None, "localhost-boundary"),
    # Several entries: the earliest matching one is reported.
    ("a.example.com,example.com", "x.a.example.com", 443, "a.example.com", "earliest-1"),
    ("example.com,a.example.com", "x.a.example.com", 443, "example.com", "earliest-2"),
    ("10.0.0.0/8,10.0.0.0/24", "10.0.0.1", 80, "10.0.0.0/8", "earliest-cidr-short-first"),
    ("10.0.0.0/24,10.0.0.0/8", "10.0.0.1", 80, "10.0.0.0/24", "earliest-cidr-long-first"),
    ("10.0.0.0/24:80,10.0.0.0/8", "10.0.0.1", 80, "10.0.0.0/8", "cidr-port-ignored"),
    ("a.com:8443,x.a.com", "x.a.com", 8443, "a.com:8443", "earliest-with-port"),
]
MATCH_CASES = [pytest.param(*row[:4], id=row[4]) for row in ROWS]


def test_table_is_large_enough() -> None:
    assert len(MATCH_CASES) >= 100


@pytest.mark.parametrize(("no_proxy", "host", "port", "expected"), MATCH_CASES)
def test_match(no_proxy: str, host: str, port: int | None, expected: str | None) -> None:
    matcher = NoProxyMatcher.parse(no_proxy)
    entry = matcher.match(canonical_host(host), port)
    assert (entry.raw if entry is not None else None) == expected


@pytest.mark.parametrize(
    ("token", "kind", "value", "port"),
    [
        pytest.param("*", "all", "*", None, id="all"),
        pytest.param("Example.COM", "domain", "example.com", None, id="domain"),
        pytest.param(".example.com", "domain", "example.com", None, id="dot-domain"),
        pytest.param("*.example.com.", "domain", "example.com", None, id="star-dot-trailing"),
        pytest.param("example.com:8080", "domain", "example.com", 8080, id="domain-port"),
        pytest.param("my_host.internal", "domain", "my_host.internal", None, id="underscore"),
        pytest.param("bücher.example", "domain", "xn--bcher-kva.example", None, id="idna"),
        pytest.param("10.0.0.1", "ip", "10.0.0.1", None, id="ipv4"),
        pytest.param("1.2.3.4:80", "ip", "1.2.3.4", 80, id="ipv4-port"),
        pytest.param("2001:DB8::0:1", "ip", "2001:db8::1", None, id="ipv6-compressed"),
        pytest.param("[::1]:8443", "ip", "::1", 8443, id="ipv6-port"),
        pytest.param("::ffff:10.0.0.1", "ip", "10.0.0.1", None, id="mapped"),
        pytest.param("fe80::1%eth0", "ip", "fe80::1", None, id="zone"),
        pytest.param("10.1.2.3/8", "cidr", "10.0.0.0/8", None, id="cidr-masked"),
        pytest.param("[2001:db8::1]/32", "cidr", "2001:db8::/32", None, id="cidr6-brackets"),
        pytest.param("::ffff:10.0.0.0/104", "cidr", "10.0.0.0/8", None, id="cidr-mapped"),
        pytest.param("0.0.0.0/0", "cidr", "0.0.0.0/0", None, id="cidr-zero"),
    ],
)
def test_parse_token_entries(token: str, kind: str, value: str, port: int | None) -> None:
    assert parse_token(token) == Entry(token, kind, value, port)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "reason_part"),
    [
        pytest.param("http://example.com", "URL", id="url"),
        pytest.param("*example.com", "partial wildcard", id="partial-prefix"),
        pytest.param("ex*.com", "partial wildcard", id="partial-middle"),
        pytest.param("10.0.0.0/33", "from 0 to 32", id="cidr-33"),
        pytest.param("::/129", "from 0 to 128", id="cidr-129"),
        pytest.param("10.0.0.0/-1", "from 0 to 32", id="cidr-negative"),
        pytest.param("10.0.0.0/abc", "from 0 to 32", id="cidr-abc"),
        pytest.param("name/8", "before '/'", id="cidr-name"),
        pytest.param("example.com:0", "1 to 65535", id="port-0"),
        pytest.param("example.com:99999", "1 to 65535", id="port-large"),
        pytest.param(":8080", "no host", id="port-only"),
        pytest.param("a:b:c", "several ':'", id="colons"),
        pytest.param("[example.com]", "IPv6", id="brackets-name"),
        pytest.param("[::1]x", "closing bracket", id="after-bracket"),
        pytest.param("..example.com", "at most one dot", id="two-dots"),
        pytest.param("*.", "Nothing is left", id="star-dot"),
        pytest.param("a..b", "empty label", id="empty-label"),
        pytest.param("ex$mple.com", "'$'", id="bad-char"),
        pytest.param("127.1", "ends in a number", id="short-ipv4"),
        pytest.param("foo.123", "ends in a number", id="numeric-tld"),
        pytest.param("exa\x00mple.com", "control character", id="control"),
        pytest.param("a" * 64 + ".com", "longer than 63", id="long-label"),
        pytest.param("exam\u200dple.com", "internationalised", id="bad-idna"),
    ],
)
def test_ignored_reasons(token: str, reason_part: str) -> None:
    matcher = NoProxyMatcher.parse(token)
    assert not matcher.entries
    assert len(matcher.ignored) == 1
    ignored = matcher.ignored[0]
    assert ignored.token == token
    assert reason_part in ignored.reason
    assert ignored.reason[0].isupper() and ignored.reason.endswith(".")
    assert parse_token(token) == ignored


def test_ignored_tokens_are_kept_in_order_and_do_not_spoil_the_list() -> None:
    matcher = NoProxyMatcher.parse("ex*.com, example.org, http://x, 10.0.0.0/99, 10.0.0.0/8")
    assert [i.token for i in matcher.ignored] == ["ex*.com", "http://x", "10.0.0.0/99"]
    assert [e.raw for e in matcher.entries] == ["example.org", "10.0.0.0/8"]
    assert matcher.match("www.example.org", 443) is not None


def test_duplicates_are_dropped_keeping_the_first_spelling() -> None:
    matcher = NoProxyMatcher.parse(".example.com,example.com,*.Example.com,example.com:443")
    assert [e.raw for e in matcher.entries] == [".example.com", "example.com:443"]


def test_iterable_items_may_be_lists() -> None:
    matcher = NoProxyMatcher.parse(["a.com b.com", "c.com,d.com", "", "a.com"])
    assert [e.value for e in matcher.entries] == ["a.com", "b.com", "c.com", "d.com"]


def test_parse_token_strips_surrounding_whitespace() -> None:
    assert parse_token(" * ") == Entry("*", "all", "*")
    assert parse_token("") == Ignored("", "The token is empty.")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("Example.COM", "example.com", id="lower"),
        pytest.param("example.com.", "example.com", id="trailing-dot"),
        pytest.param("my_host.internal", "my_host.internal", id="underscore"),
        pytest.param("bücher.example", "xn--bcher-kva.example", id="idna"),
        pytest.param("XN--BCHER-KVA.example", "xn--bcher-kva.example", id="a-label-upper"),
        pytest.param("ｅｘａｍｐｌｅ。com", "example.com", id="uts46-mapping"),
        pytest.param("[::1]", ipaddress.IPv6Address("::1"), id="ipv6-brackets"),
        pytest.param("::1", ipaddress.IPv6Address("::1"), id="ipv6-bare"),
        pytest.param("[FE80::1%25eth0]", ipaddress.IPv6Address("fe80::1"), id="zone"),
        pytest.param("[::ffff:1.2.3.4]", ipaddress.IPv4Address("1.2.3.4"), id="mapped"),
        pytest.param("1.2.3.4", ipaddress.IPv4Address("1.2.3.4"), id="ipv4"),
        pytest.param("1.2.3.4.", ipaddress.IPv4Address("1.2.3.4"), id="ipv4-trailing-dot"),
        pytest.param("127.1", ipaddress.IPv4Address("127.0.0.1"), id="whatwg-short"),
        pytest.param("0x7F.0.0.1", ipaddress.IPv4Address("127.0.0.1"), id="whatwg-hex"),
        pytest.param("0177.0.0.1", ipaddress.IPv4Address("127.0.0.1"), id="whatwg-octal"),
        pytest.param("2130706433", ipaddress.IPv4Address("127.0.0.1"), id="whatwg-number"),
        pytest.param("1000::1%.example.com", ipaddress.IPv6Address("1000::1"), id="cve-zone"),
    ],
)
def test_canonical_host(raw: str, expected: object) -> None:
    host = canonical_host(raw)
    assert host == expected
    assert type(host) is type(expected)
    if isinstance(host, ipaddress.IPv6Address):
        assert host.scope_id is None


@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param(".", "is empty", id="dot"),
        pytest.param("exa mple.com", "space", id="space"),
        pytest.param("example.com\r\nX-Injected: 1", "line break", id="crlf"),
        pytest.param("example.com\n", "line break", id="lf"),
        pytest.param("example.com\r", "line break", id="cr"),
        pytest.param("exa\x00mple.com", "control character U+0000", id="nul"),
        pytest.param("exa\x7fmple.com", "control character U+007F", id="del"),
        pytest.param("exa\x85mple.com", "control character U+0085", id="c1-control"),
        pytest.param("exa\tmple.com", "control character U+0009", id="tab"),
        pytest.param("exa\u2003mple.com", "space", id="unicode-space"),
        pytest.param("example.com:443", "not an IPv6", id="port"),
        pytest.param("user@example.com", "'@'", id="userinfo"),
        pytest.param("exa/mple.com", "'/'", id="slash"),
        pytest.param("ex%61mple.com", "'%'", id="percent"),
        pytest.param("ex*.com", "'*'", id="star"),
        pytest.param("a..b", "empty label", id="empty-label"),
        pytest.param(".example.com", "empty label", id="leading-dot"),
        pytest.param("example.com..", "empty label", id="two-trailing-dots"),
        pytest.param("a" * 64 + ".com", "longer than 63", id="long-label"),
        pytest.param(("a" * 60 + ".") * 5 + "com", "longer than 253", id="long-name"),
        pytest.param("[1.2.3.4]", "brackets", id="bracketed-ipv4"),
        pytest.param("[::1", "brackets", id="unclosed-bracket"),
        pytest.param("[example.com]", "brackets", id="bracketed-name"),
        pytest.param("1.2.3.4%eth0", "'%'", id="ipv4-zone"),
        pytest.param("foo.123", "ends in a number", id="numeric-tld"),
        pytest.param("1.2.3.256", "ends in a number", id="ipv4-out-of-range"),
        pytest.param("1.2.3.4.5", "ends in a number", id="five-parts"),
        pytest.param("exam\u200dple.com", "internationalised", id="bad-idna"),
        pytest.param("example.com\uff0fpath", "'/'", id="fullwidth-slash"),
    ],
)
def test_canonical_host_rejects(raw: str, message_part: str) -> None:
    with pytest.raises(ValueError) as info:
        canonical_host(raw)
    message = str(info.value)
    assert message.startswith("host ")
    assert message_part in message


def test_matcher_is_immutable() -> None:
    matcher = NoProxyMatcher.parse("example.com")
    with pytest.raises(AttributeError):
        matcher.entries = ()
    with pytest.raises(AttributeError):
        matcher._domains = {}
    with pytest.raises(AttributeError):
        del matcher.ignored
    with pytest.raises(AttributeError):
        matcher.extra = 1
    assert isinstance(matcher.entries, tuple) and isinstance(matcher.ignored, tuple)


def test_entries_and_ignored_are_frozen() -> None:
    entry = parse_token("example.com")
    ignored = parse_token("ex*.com")
    assert isinstance(entry, Entry) and isinstance(ignored, Ignored)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.value = "evil.com"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ignored.reason = ""  # type: ignore[misc]


def test_compiled_once_a_later_change_to_the_input_changes_nothing() -> None:
    tokens = ["example.com"]
    matcher = NoProxyMatcher.parse(tokens)
    tokens.append("other.com")
    tokens[0] = "changed.com"
    assert matcher.match("example.com", 443) is not None
    assert matcher.match("other.com", 443) is None


def test_from_entries_round_trip() -> None:
    parsed = NoProxyMatcher.parse("*.Example.com:8443, 10.1.2.3/8, [::1], bücher.example, *")
    rebuilt = NoProxyMatcher.from_entries(parsed.entries)
    assert rebuilt.entries == parsed.entries
    assert not rebuilt.ignored
    for host, port in [("a.example.com", 8443), ("10.9.9.9", 1), ("::1", 2), ("x.org", 3)]:
        assert rebuilt.match(canonical_host(host), port) == parsed.match(canonical_host(host), port)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(Entry("x", "domain", "Example.com"), id="upper-domain"),
        pytest.param(Entry("x", "domain", ".example.com"), id="dotted-domain"),
        pytest.param(Entry("x", "domain", "127.1"), id="numeric-domain"),
        pytest.param(Entry("x", "ip", "10.0.0.0/8"), id="ip-with-prefix"),
        pytest.param(Entry("x", "ip", "::ffff:10.0.0.1"), id="ip-mapped"),
        pytest.param(Entry("x", "cidr", "10.1.2.3/8"), id="cidr-host-bits"),
        pytest.param(Entry("x", "cidr", "10.0.0.0/33"), id="cidr-bad-prefix"),
        pytest.param(Entry("x", "all", "all"), id="all-value"),
    ],
)
def test_from_entries_refuses_non_canonical_values(entry: Entry) -> None:
    with pytest.raises(ValueError):
        NoProxyMatcher.from_entries([entry])


def test_entry_validates_kind_and_port() -> None:
    with pytest.raises(ValueError):
        Entry("x", "regex", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Entry("x", "domain", "x.com", 0)
    with pytest.raises(ValueError):
        Entry("x", "domain", "x.com", 65536)


@pytest.mark.parametrize(
    ("token", "text"),
    [
        pytest.param("*", "every host", id="all"),
        pytest.param(".example.com", "example.com and its subdomains", id="domain"),
        pytest.param("10.0.0.1", "the address 10.0.0.1", id="ip"),
        pytest.param("10.0.0.0/8", "the addresses in 10.0.0.0/8", id="cidr"),
        pytest.param("[::1]:8443", "the address ::1, on port 8443 only", id="port"),
    ],
)
def test_covers_text(token: str, text: str) -> None:
    entry = parse_token(token)
    assert isinstance(entry, Entry)
    assert entry.covers_text() == text


def test_len_bool_repr() -> None:
    empty = NoProxyMatcher.parse("ex*.com")
    assert len(empty) == 0 and not empty
    assert repr(empty) == "NoProxyMatcher([], ignored=1)"
    full = NoProxyMatcher.parse(",".join(f"h{i}.example" for i in range(8)))
    assert len(full) == 8 and full
    assert repr(full) == (
        "NoProxyMatcher(['h0.example', 'h1.example', 'h2.example', 'h3.example', 'h4.example',"
        " ... 3 more], ignored=0)"
    )


def test_match_accepts_uncanonical_ipv6_objects() -> None:
    matcher = NoProxyMatcher.parse("10.0.0.0/8, fe80::/10")
    assert matcher.match(ipaddress.IPv6Address("::ffff:10.0.0.1"), 80) is not None
    assert matcher.match(ipaddress.IPv6Address("fe80::1%eth0"), 80) is not None


# Property tests. No deadline: timing on a shared CI machine is not what they check.

NOISY_TEXT = st.text(alphabet="ab.*:/[]%, \t\n\r019fx-_üÜ。\x00@") | st.text()
LABEL = st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=12)
LAST_LABEL = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)
DOMAIN = st.builds(
    lambda labels, last: ".".join([*labels, last]),
    st.lists(LABEL, max_size=3),
    LAST_LABEL,
)


@settings(deadline=None)
@given(NOISY_TEXT)
def test_parse_never_raises(value: str) -> None:
    matcher = NoProxyMatcher.parse(value)
    assert len(matcher.entries) + len(matcher.ignored) <= len(value)
    for entry in matcher.entries:
        assert NoProxyMatcher.from_entries([entry]).entries == (entry,)


@settings(deadline=None)
@given(st.lists(NOISY_TEXT, max_size=4))
def test_parse_iterable_never_raises(values: list[str]) -> None:
    NoProxyMatcher.parse(values)


@settings(deadline=None)
@given(NOISY_TEXT)
def test_canonical_host_raises_only_value_error(raw: str) -> None:
    try:
        host = canonical_host(raw)
    except ValueError:
        return
    assert canonical_host(str(host)) == host
    if isinstance(host, str):
        assert set(host) <= set(string.ascii_lowercase + string.digits + "-_.")


@settings(deadline=None)
@given(DOMAIN, LABEL, st.sampled_from(["", ".", "*."]), st.booleans())
def test_domain_label_boundary(domain: str, label: str, prefix: str, upper: bool) -> None:
    matcher = NoProxyMatcher.parse(prefix + (domain.upper() if upper else domain))
    assert matcher.match(canonical_host(domain), 443) is not None
    assert matcher.match(canonical_host(f"{label}.{domain}"), 443) is not None
    assert matcher.match(canonical_host(label + domain), 443) is None


PORT = st.sampled_from([None, 80, 443, 8443])
SMALL_LABEL = st.sampled_from(["a", "b", "c"])
SMALL_NAME = st.lists(SMALL_LABEL, min_size=1, max_size=4).map(".".join)


@settings(deadline=None)
@given(
    st.lists(st.tuples(SMALL_NAME, PORT), max_size=8),
    SMALL_NAME,
    PORT,
)
def test_domain_index_agrees_with_a_plain_scan(
    entries: list[tuple[str, int | None]], host: str, port: int | None
) -> None:
    value = ",".join(name if p is None else f"{name}:{p}" for name, p in entries)
    matcher = NoProxyMatcher.parse(value)
    expected = next(
        (
            e
            for e in matcher.entries
            if (host == e.value or host.endswith("." + e.value)) and e.port in (None, port)
        ),
        None,
    )
    assert matcher.match(host, port) == expected


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 255), st.integers(0, 8), PORT), max_size=8),
    st.integers(0, 255),
    PORT,
)
def test_ip_index_agrees_with_a_plain_scan(
    entries: list[tuple[int, int, int | None]], address: int, port: int | None
) -> None:
    # Work in 10.0.0.0/24 with prefixes /24-/32 so that hits are frequent; ports on plain IPs.
    tokens = [
        f"10.0.0.{n}/{24 + bits}" if p is None else f"10.0.0.{n}:{p}" for n, bits, p in entries
    ]
    matcher = NoProxyMatcher.parse(tokens)
    host = ipaddress.IPv4Address(f"10.0.0.{address}")
    expected = next(
        (
            e
            for e in matcher.entries
            if host in ipaddress.ip_network(e.value) and e.port in (None, port)
        ),
        None,
    )
    assert matcher.match(host, port) == expected


_ascii_hosts = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True),
    st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}){0,4}\.?", fullmatch=True),
    st.from_regex(r"([a-z0-9-]{1,8}\.){0,4}[a-z0-9-]{1,8}\.?", fullmatch=True),
)


@settings(max_examples=600, deadline=None)
@given(_ascii_hosts)
def test_fast_paths_agree_with_the_full_parser(raw: str) -> None:
    from egress.noproxy import _canonical_host_full

    try:
        fast: object = canonical_host(raw)
    except ValueError:
        fast = ValueError
    try:
        full: object = _canonical_host_full(raw)
    except ValueError:
        full = ValueError
    assert fast == full
