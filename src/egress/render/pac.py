"""A PAC file (``FindProxyForURL(url, host)``) that makes the router's decisions for browsers and
other PAC clients.

It is written from the router's rules as data (``Router.rules()``), in the router's order: the
proxy switch (off: ``DIRECT`` for everything), then each rule's host entries with that rule's
answer for the URL's scheme (``http:``/``ws:`` take the rule's route for http:// destinations,
every other scheme its route for https:// ones), up to the first rule that covers every host
(``default``, or a ``*`` exclusion), whose answer ends the function. Proxies are written
``PROXY host:port`` (http://) or ``HTTPS host:port`` (https://, TLS to the proxy, as Chrome and
Firefox read it).

Matching is the matcher's, with no name resolution at all:

- a domain entry ``d`` covers ``host == d`` or ``host`` ending in ``"." + d`` (``dnsDomainIs``),
  after lower-casing the host and dropping one trailing dot;
- IPv4 entries and CIDRs use ``isInNet`` only when the host is an IPv4 literal (a regular
  expression checks it first: ``isInNet`` would resolve a name through DNS), and
  ``::ffff:a.b.c.d`` hosts count as IPv4;
- IPv6 entries and CIDRs are compared numerically by a small parser in the file, not by
  ``isInNetEx`` (a Microsoft and Chrome extension that Firefox lacks) nor by comparing strings
  (``::1`` and ``0:0::1`` are one address);
- an IP literal never matches a domain entry, and a name never an IP entry.

Not expressible, so left out with an :class:`~egress.render.Artifact` warning naming them:
entries with a port (``host:port``), since a PAC rule is chosen by host; and the ``warehouse=``
a program may pass to the router (a PAC file only sees URLs).

>>> from egress.settings import Settings
>>> text = render(Settings.from_proxy("http://proxy:3128", no_proxy=".corp"), RenderOptions()).text
>>> 'if (h == "corp" || dnsDomainIs(h, ".corp")) return "DIRECT";' in text
True
"""

from __future__ import annotations

import ipaddress
import json

from egress.noproxy import Entry
from egress.render import Artifact, RenderOptions
from egress.router import Rule
from egress.settings import ProxyURL, Settings

_HELPERS = r"""
// ---- helpers: pure string and number work, never a DNS lookup ----------------------------
function egressIsIPv4(h) {
  var octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  return new RegExp("^" + octet + "(\\." + octet + "){3}$").test(h);
}

// An IPv6 literal as 8 numbers, or null. Accepts "::" and a trailing dotted IPv4 part.
function egressIPv6(h) {
  if (h.indexOf(":") < 0 || !/^[0-9a-f:.]+$/.test(h)) return null;
  var last = h.lastIndexOf(":");
  var tail4 = h.substring(last + 1);
  if (tail4.indexOf(".") >= 0) {
    if (!egressIsIPv4(tail4)) return null;
    var o = tail4.split(".");
    h = h.substring(0, last + 1) + ((o[0] * 256 + o[1] * 1).toString(16)) + ":" +
        ((o[2] * 256 + o[3] * 1).toString(16));
  }
  var halves = h.split("::");
  if (halves.length > 2) return null;
  var head = halves[0] ? halves[0].split(":") : [];
  var tail = halves.length == 2 && halves[1] ? halves[1].split(":") : [];
  var missing = 8 - head.length - tail.length;
  if (halves.length == 2 ? missing < 1 : missing != 0) return null;
  var parts = head.slice(0);
  for (var i = 0; i < missing; i++) parts.push("0");
  parts = parts.concat(tail);
  var out = [];
  for (var j = 0; j < 8; j++) {
    if (!/^[0-9a-f]{1,4}$/.test(parts[j])) return null;
    out.push(parseInt(parts[j], 16));
  }
  return out;
}

// True when the first `bits` bits of the addresses a and net (8 numbers each) are equal.
function egressIn6(a, net, bits) {
  for (var i = 0; i < 8 && bits > 0; i++) {
    var take = bits >= 16 ? 16 : bits;
    var mask = (0xffff << (16 - take)) & 0xffff;
    if ((a[i] & mask) != (net[i] & mask)) return false;
    bits -= take;
  }
  return true;
}
"""

_NORMALISE = r"""
  // the host as the router reads it: lower case, no brackets, no IPv6 zone, one trailing dot off
  var h = String(host).toLowerCase();
  if (h.charAt(0) == "[" && h.charAt(h.length - 1) == "]") h = h.substring(1, h.length - 1);
  if (h.indexOf(":") >= 0 && h.indexOf("%") >= 0) h = h.substring(0, h.indexOf("%"));
  if (h.length > 1 && h.charAt(h.length - 1) == ".") h = h.substring(0, h.length - 1);
  // http: and ws: use the http proxy; every other scheme the https one
  var plain = /^(http|ws):/i.test(url);
  var v4 = egressIsIPv4(h) ? h : null;
  var v6 = v4 === null ? egressIPv6(h) : null;
  if (v6 !== null && v6[0] == 0 && v6[1] == 0 && v6[2] == 0 && v6[3] == 0 && v6[4] == 0 &&
      v6[5] == 0xffff) {
    // ::ffff:a.b.c.d is an IPv4 address
    v4 = (v6[6] >> 8) + "." + (v6[6] & 255) + "." + (v6[7] >> 8) + "." + (v6[7] & 255);
    v6 = null;
  }
"""


def _q(text: str) -> str:
    return json.dumps(text)


def _answer(route: str, proxy: ProxyURL | None) -> str:
    """The PAC answer for a route: DIRECT, PROXY host:port or HTTPS host:port (a tunnel is a
    CONNECT through the proxy, which is what a browser does for it too)."""
    if route == "direct" or proxy is None:
        return "DIRECT"
    host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
    return f"{'HTTPS' if proxy.scheme == 'https' else 'PROXY'} {host}:{proxy.port}"


def _source(rule: Rule) -> str:
    """The comment above a rule's conditions."""
    if rule.kind == "disabled":
        return f"Everything goes DIRECT: {rule.sentence} (rule {rule.rule})."
    if rule.kind == "excluded":
        return "excluded_domains (yours)"
    if rule.kind == "auto":
        return f"automatic ({rule.rule}): {rule.sentence}"
    return f"{rule.rule}: {rule.sentence}"


def _either(plain: str, other: str) -> str:
    return _q(plain) if plain == other else f"plain ? {_q(plain)} : {_q(other)}"


def _v6_words(address: ipaddress.IPv6Address) -> str:
    packed = int(address)
    words = [(packed >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    return "[" + ", ".join(f"0x{w:x}" if w else "0" for w in words) + "]"


def _condition(entry: Entry) -> tuple[str, str] | None:
    """(section, JavaScript test) for an entry without a port: section v4, v6 or name."""
    if entry.kind == "domain":
        return "name", f"h == {_q(entry.value)} || dnsDomainIs(h, {_q('.' + entry.value)})"
    if entry.kind == "ip":
        address = ipaddress.ip_address(entry.value)
        if isinstance(address, ipaddress.IPv4Address):
            return "v4", f'isInNet(v4, {_q(str(address))}, "255.255.255.255")'
        return "v6", f"egressIn6(v6, {_v6_words(address)}, 128)"
    if entry.kind == "cidr":
        network = ipaddress.ip_network(entry.value)
        if isinstance(network, ipaddress.IPv4Network):
            return (
                "v4",
                f"isInNet(v4, {_q(str(network.network_address))}, {_q(str(network.netmask))})",
            )
        words = _v6_words(network.network_address)
        return "v6", f"egressIn6(v6, {words}, {network.prefixlen})"
    return None


def _header(settings: Settings) -> list[str]:
    return [
        f"// PAC file rendered by `egress render pac` from {settings.source}.",
        "// It makes egress's routing decisions: the automatic exclusions and your excluded",
        "// domains go DIRECT, the warehouse rules apply, everything else uses the proxy for the",
        "// URL's scheme. It never resolves a name: isInNet runs only on IPv4 literals.",
        "// Plain host names (no dot) are routed like any other name, as egress does.",
        '// "HTTPS host:port" (TLS to the proxy) is understood by Chrome and Firefox.',
    ]


def render(settings: Settings, options: RenderOptions) -> Artifact:
    """The PAC file text, and the rules it cannot express."""
    del options  # nothing on the command line changes this artifact
    warnings: list[str] = []
    lines = _header(settings)
    if settings.proxy.username:
        lines.append(
            "// The proxy wants Basic auth: browsers ask for it; a PAC file never holds it."
        )
    sections: dict[str, list[str]] = {"v4": [], "v6": [], "name": []}
    last_comment: dict[str, str] = {}
    with_port: list[str] = []
    default: tuple[str, str] | None = None
    everything: str | None = None
    answered: set[str] = set()
    for rule in settings.router().rules():
        plain = _answer(rule.plain_route, rule.plain_via)
        other = _answer(rule.route, rule.via)
        if rule.covers_everything:
            # first match wins: nothing after a rule that covers every host is ever reached
            default = (plain, other)
            if rule.kind != "default" and answered <= {"DIRECT"} and plain == other == "DIRECT":
                everything = _source(rule)
            if rule.kind == "disabled":
                warnings.append(f"{rule.sentence}, so this PAC file sends every URL DIRECT")
            break
        for entry in rule.parsed:
            if entry.port is not None:
                with_port.append(entry.raw)
                continue
            cond = _condition(entry)
            if cond is None:
                continue
            section = sections[cond[0]]
            source = _source(rule)
            if last_comment.get(cond[0]) != source:
                section.append(f"    // {source}")
                last_comment[cond[0]] = source
            section.append(f"    if ({cond[1]}) return {_either(plain, other)};")
            answered.update((plain, other))
    assert default is not None  # the router's last rule, default, covers every host
    default_plain, default_other = default

    if with_port:
        listed = ", ".join(with_port)
        warnings.append(
            f"not in the PAC file: {listed} (a PAC rule is chosen by host, so entries with a "
            "port cannot be expressed); browsers send those destinations to the proxy"
        )
    if everything is not None:
        lines.append("function FindProxyForURL(url, host) {")
        lines.append(f'  return "DIRECT"; // {everything}')
        lines.append("}")
        return Artifact("\n".join(lines) + "\n", tuple(warnings))
    lines.append(_HELPERS.strip("\n"))
    lines.append("")
    lines.append("function FindProxyForURL(url, host) {")
    lines.append(_NORMALISE.strip("\n"))
    if with_port:
        lines.append(f"  // Not expressible here (entries with a port): {', '.join(with_port)}")
    lines.append("  if (v4 !== null) {")
    lines += sections["v4"]
    lines.append("  } else if (v6 !== null) {")
    lines += sections["v6"]
    lines.append("  } else {")
    lines += sections["name"]
    lines.append("  }")
    lines.append(f"  return {_either(default_plain, default_other)}; // default: everything else")
    lines.append("}")
    return Artifact("\n".join(lines) + "\n", tuple(warnings))
