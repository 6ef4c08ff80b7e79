"""A Squid allowlist fragment for the destinations in scope that go through the proxy.

For the proxy team: one ``dstdomain`` ACL per port (``.example.com`` for a wildcard), each
destination under a comment naming its purpose, CONNECT limited to the catalog's ports, an
``http_access allow`` per port and a final deny, all scoped to the ACL ``egress_clients`` (every
client until the proxy team narrows it to the platform's nodes), so the fragment can be pasted
into an existing ``squid.conf`` without denying other users. A comment section lists what
bypasses the proxy, and why: the NO_PROXY list every artifact shares
(:mod:`egress.render.bypass`), by rule.

The routes are the router's with the admin-console switch on: the allowlist has to be in place
before the switch is flipped (S6).

>>> from egress.settings import Settings
>>> text = render(Settings.from_proxy("http://proxy:3128"), RenderOptions()).text
>>> "acl egress_dst_443 dstdomain -n auth.carto.com" in text
True
>>> text.rstrip().splitlines()[-1].startswith("#") and "http_access deny egress_clients" in text
True
"""

from __future__ import annotations

from egress.noproxy import NoProxyMatcher, canonical_host
from egress.render import Artifact, RenderOptions
from egress.render.bypass import no_proxy_list, routing_router
from egress.scope import Row, groups_in_scope, in_scope
from egress.settings import Settings

PLACEHOLDER_HOST = "add-your-host.invalid"


def _routing_settings(settings: Settings, warnings: list[str]) -> Settings:
    """The settings to route with (``bypass.routing_router``), and what that assumed."""
    proxy = settings.proxy
    if not proxy.configured:
        warnings.append(
            "no proxy is configured: routes were taken as for an http:// proxy (with an "
            "https:// proxy, Snowflake goes direct and leaves this list)"
        )
    elif not proxy.enabled:
        warnings.append(
            "the proxy is switched off (proxy.enabled: false); the allowlist is what the "
            "platform needs once it is switched on"
        )
    return routing_router(settings).settings


def _dstdomain(host: str) -> str:
    return "." + host[2:] if host.startswith("*.") else host


def render(settings: Settings, options: RenderOptions) -> Artifact:
    """The fragment's text, and what a person must do about it."""
    warnings: list[str] = []
    routed = _routing_settings(settings, warnings)
    groups = [g.name for g in groups_in_scope(routed, options.features)]
    rows = in_scope(routed, options.features)
    through = [r for r in rows if r.route in ("proxy", "tunnel")]
    direct = [r for r in rows if r.route == "direct"]

    by_port: dict[int, list[Row]] = {}
    for row in through:
        by_port.setdefault(row.port, []).append(row)
    ports = sorted(by_port)
    connect_ports = sorted({r.port for r in through if r.url.split("://")[0] != "http"})

    out = [
        f"# ---- egress: proxy allowlist, rendered by `egress render squid` from {settings.source}",
        "# Insert this block into squid.conf where the rules for the platform's clients belong,",
        "# before any broader http_access allow. It ends by denying egress_clients everything",
        "# else, so narrow egress_clients to the addresses of the platform's nodes or pods.",
        f"# Feature groups in scope: {', '.join(groups)}.",
        "acl egress_clients src all",
        "acl egress_CONNECT method CONNECT",
        "# CONNECT only to the catalog's ports (SSL_ports for the platform)",
    ]
    if connect_ports:
        out.append(f"acl egress_SSL_ports port {' '.join(map(str, connect_ports))}")
    else:
        out.append("# (nothing goes through CONNECT)")
    allow_lines: list[str] = []
    for port in ports:
        acl = f"egress_dst_{port}"
        out.append("")
        out.append(f"# -- port {port}")
        wildcards = NoProxyMatcher.parse(
            [r.host[2:] for r in by_port[port] if r.host.startswith("*.")]
        )
        listed = 0
        for row in by_port[port]:
            need = "required" if row.required else "optional"
            groups_text = ", ".join((row.feature, *row.also_in))
            out.append(f"# {row.destination}  {groups_text}, {need}: {row.purpose}")
            if row.host == "*":
                out.append(f"#   any host: add yours below as  acl {acl} dstdomain -n <host>")
                out.append(f"#   ({PLACEHOLDER_HOST} is a placeholder; .invalid never resolves)")
                out.append(f"acl {acl} dstdomain -n {PLACEHOLDER_HOST}")
                listed += 1
                warnings.append(
                    f"{row.destination} ({row.feature}) goes through the proxy for any host: add "
                    f"your servers to the ACL {acl} by name"
                )
                continue
            if not row.host.startswith("*."):
                covering = wildcards.match(canonical_host(row.host), port)
                if covering is not None:
                    out.append(f"#   covered by .{covering.value}")
                    continue
            if row.route == "tunnel":
                out.append("#   carried through CONNECT by egress tunnel (tunnel_tcp_warehouses)")
            out.append(f"acl {acl} dstdomain -n {_dstdomain(row.host)}")
            listed += 1
        if listed:
            out.append(f"acl egress_port_{port} port {port}")
            allow_lines.append(f"http_access allow egress_clients {acl} egress_port_{port}")

    out.append("")
    out.append("# -- access: CONNECT only to those ports, each destination only on its port")
    if connect_ports:
        out.append("http_access deny egress_clients egress_CONNECT !egress_SSL_ports")
    else:
        out.append("http_access deny egress_clients egress_CONNECT")
    out.extend(allow_lines)
    out.append("http_access deny egress_clients")
    out.append("")
    out.extend(_bypass_section(routed, direct))
    return Artifact("\n".join(out) + "\n", tuple(warnings))


def _bypass_section(settings: Settings, direct: list[Row]) -> list[str]:
    """Comment lines: what goes direct (no ACL needed, but the network policy must allow it):
    the NO_PROXY list every artifact shares, by rule, then the catalog's direct destinations."""
    lines = [
        "# ---- egress: what bypasses the proxy (direct), from the router. Nothing to allow here;",
        "# where a restrictive network policy is in force, allow it there",
        "# (egress render networkpolicy). Each group is one rule of `egress explain --all-rules`:",
    ]
    for group in no_proxy_list(settings).groups:
        lines.append(f"#   [{group.rule}] {group.reason}:")
        chunk: list[str] = []
        for token in group.tokens:
            if chunk and len("#     " + ", ".join([*chunk, token])) > 96:
                lines.append("#     " + ", ".join(chunk))
                chunk = []
            chunk.append(token)
        lines.append("#     " + ", ".join(chunk))
    for row in direct:
        lines.append(f"#   {row.destination}  [{row.rule}] {row.reason}")
    return lines
