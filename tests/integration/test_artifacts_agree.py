"""Every rendered artifact gives the router's answer, for generated settings and destinations.

For each generated example (proxy kinds, one or two proxies, the switch, exclusions of every
kind, warehouses, deployment kinds, GKE Workload Identity, the tunnel) and its destinations
(hosts under the exclusions and beside them, warehouse domains, loopback, ``.svc`` names, the
metadata server, random names and addresses):

- the env file, read back by real runtimes: curl (in a private network namespace, against a
  stand-in proxy), Python urllib and requests, Node's proxy-from-env;
- the Helm values, loaded back as ``--helm-values`` loads them;
- the PAC file, evaluated in Node;
- the Squid allowlist: every proxied destination in scope is allowed (ACLs evaluated as Squid
  evaluates them; ``test_the_acl_reading_is_squids`` checks that reading against a real Squid);
- the NetworkPolicy: every direct destination with a known address is allowed.

Where a format cannot say what the router says, the renderer warns: each tolerated difference
must be covered by the warning that names it (``excuse_*`` below say which warning covers
which difference), and an unexplained one fails the example.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tests.support.origin import FakeOrigin
from tests.support.ports import LOOPBACK
from tests.support.runtimes import NamespacedCurl, NodeWorker, python_routes
from tests.support.squid_fragment import FragmentSquid

from egress.catalog import known_features
from egress.noproxy import Entry, NoProxyMatcher
from egress.render import RenderOptions
from egress.render import env as env_render
from egress.render import helm as helm_render
from egress.render import networkpolicy as np_render
from egress.render import pac as pac_render
from egress.render import squid as squid_render
from egress.render.bypass import no_proxy_list, routing_router
from egress.router import Decision, Router, Rule
from egress.scope import in_scope
from egress.settings import Settings, load_helm_values, load_settings_from_mapping
from egress.warehouses import WAREHOUSES

pytestmark = pytest.mark.integration

# -- generated settings ------------------------------------------------------------------------

DOMAINS = [
    "corp.example",
    ".corp.example",
    "*.wild.example",
    "git.internal",
    "bücher.example",
    "Build.Example.",
    ".googleapis.com",
    "acme.snowflakecomputing.com",
]
PORTED = ["build.example:8443", "10.1.2.3:8080", "[fd00::2]:8443", "git.internal:9000"]
ADDRESSES = ["10.1.2.3", "192.168.1.5", "fd00::1", "172.20.0.7"]
CIDRS = ["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12", "100.64.0.0/10", "fd00:1::/32"]
RARE = ["*", "ex*.com"]
WAREHOUSE_CIDRS = {
    "postgres": "203.0.113.0/25",
    "redshift": "203.0.113.128/25",
    "snowflake": "198.51.100.0/24",
    "databricks": "192.0.2.0/25",
    "bigquery": "192.0.2.128/25",
}
OPTIONAL_FEATURES = [f for f in known_features() if f != "core"]

_ENTRY = st.one_of(
    st.sampled_from(DOMAINS),
    st.sampled_from(PORTED),
    st.sampled_from(ADDRESSES),
    st.sampled_from(CIDRS),
    st.sampled_from(RARE).filter(lambda _: True),
)


@st.composite
def raw_settings(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["http", "https"]))
    url = f"{kind}://proxy.corp.example:{3128 if kind == 'http' else 3129}"
    second = draw(st.sampled_from([None, None, "http", "https"]))
    https_url = None if second is None else f"{second}://tls-proxy.corp.example:3130"
    excluded = draw(st.lists(_ENTRY, max_size=6, unique=True))
    if "*" in excluded and draw(st.integers(0, 3)):
        excluded.remove("*")  # keep "everything direct" rare
    return {
        "proxy": {
            "url": url,
            "https_url": https_url,
            "enabled": draw(st.sampled_from([True, True, True, False])),
        },
        "excluded_domains": excluded,
        "warehouses": draw(st.lists(st.sampled_from(list(WAREHOUSES)), unique=True)),
        "deployment": {
            "kind": draw(st.sampled_from(["kubernetes", "kubernetes", "single-vm"])),
            "cluster_domain": draw(st.sampled_from(["cluster.local", "k8s.internal"])),
            "service_ip": draw(st.sampled_from([None, "10.96.0.1", "172.20.0.1"])),
            "gke_workload_identity": draw(st.booleans()),
        },
        "tunnel_tcp_warehouses": draw(st.booleans()),
        "features": draw(st.lists(st.sampled_from(OPTIONAL_FEATURES), max_size=2, unique=True)),
    }


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env={})


# -- generated destinations ----------------------------------------------------------------------

BASE_HOSTS = [
    "auth.carto.com",
    "acme.snowflakecomputing.com",
    "dbc-1.cloud.databricks.com",
    "adb-1.azuredatabricks.net",
    "bigquery.googleapis.com",
    "c.redshift.amazonaws.com",
    "localhost",
    "app.localhost",
    "127.0.0.1",
    "127.0.0.2",
    "[::1]",
    "api.ns.svc",
    "api.ns.svc.cluster.local",
    "api.ns.svc.k8s.internal",
    "169.254.169.254",
    "metadata",
    "metadata.google.internal",
    "10.96.0.1",
    "172.20.0.1",
    "11.0.0.1",
]
_LABEL = st.sampled_from(["api", "corp", "example", "internal", "git", "svc", "x-1", "wild"])
_RANDOM_HOST = st.one_of(
    st.lists(_LABEL, min_size=2, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.sampled_from(
        ["10.200.3.4", "192.168.77.1", "100.100.1.1", "[fd00:1::9]", "[fd00::3]", "[2001:db8::1]"]
    ),
)


def url_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def around(entry: Entry) -> list[tuple[str, int | None]]:
    """Hosts an exclusion covers and hosts just beside it, with its port when it has one."""
    port = entry.port
    if entry.kind == "domain":
        return [(entry.value, port), (f"a.{entry.value}", port), (f"not{entry.value}", None)]
    if entry.kind == "ip":
        address = ipaddress.ip_address(entry.value)
        return [(url_host(address), port), (url_host(address + 1), port)]
    if entry.kind == "cidr":
        net = ipaddress.ip_network(entry.value)
        inside = [net.network_address + 1, net.network_address + net.num_addresses // 2]
        outside = net.broadcast_address + 1
        return [(url_host(a), port) for a in inside] + [(url_host(outside), None)]
    return []


def destinations(s: Settings, extra: Sequence[str], explicit: bool) -> list[str]:
    """http:// and https:// URLs for every host, some with an explicit (default) port."""
    pairs: list[tuple[str, int | None]] = [(h, None) for h in [*BASE_HOSTS, *extra]]
    for entry in NoProxyMatcher.parse(s.excluded_domains).entries:
        pairs += around(entry)
    urls: list[str] = []
    for host, port in dict.fromkeys(pairs):
        for scheme, default in (("http", 80), ("https", 443)):
            if port is not None:
                urls.append(f"{scheme}://{host}:{port}/x")
            elif explicit:
                urls.append(f"{scheme}://{host}:{default}/x")
            urls.append(f"{scheme}://{host}/x")
    return list(dict.fromkeys(urls))


# -- the warnings that cover a difference --------------------------------------------------------

RUNTIME_NAMES = {
    "curl": "curl",
    "urllib": "Python urllib",
    "requests": "requests",
    "node": "proxy-from-env",
}


def warned(warnings: Sequence[str], *needles: str) -> str | None:
    return next((w for w in warnings if all(n in w for n in needles)), None)


def rule_of(router: Router, decision: Decision) -> Rule | None:
    return next((r for r in router.rules() if r.rule == decision.rule), None)


def deciding_entry(rule: Rule | None, decision: Decision) -> Entry | None:
    if rule is None or not rule.parsed:
        return None
    target = decision.target
    return NoProxyMatcher.from_entries(rule.parsed).match(target.host, target.port)


def excuse_runtime(
    runtime: str, url: str, want: str, router: Router, warnings: Sequence[str]
) -> str | None:
    """The warning of ``render env`` that covers a runtime reading ``url`` differently."""
    decision = router.decide(url)
    rule = rule_of(router, decision)
    entry = deciding_entry(rule, decision)
    name = RUNTIME_NAMES[runtime]
    if rule is not None and rule.route != rule.plain_route:
        # the rule routes http:// and https:// differently: NO_PROXY holds hosts, not schemes
        return warned(warnings, f"({rule.rule})")
    if want == "proxy" or entry is None:
        return None
    # the router sends it direct; the runtime does not read the entry that says so
    dropped = warned(warnings, f"NO_PROXY leaves out {entry.raw}")
    if dropped:
        return dropped
    if entry.port is not None:
        if runtime == "curl":
            return warned(warnings, "entries with a port", "curl and wget ignore them")
        explicit = urlsplit(url).port is not None
        if runtime in ("urllib", "requests") and not explicit:
            return warned(warnings, "entries with a port", "only when the URL names the port")
        if runtime == "requests" and entry.kind == "ip":
            return warned(warnings, "entries with a port", "requests never matches an IP")
        return None
    if entry.kind == "cidr":
        return warned(warnings, "CIDR range(s)", entry.value, name)
    if entry.kind == "ip" and ":" in entry.value:
        return warned(warnings, "IPv6 address(es)", entry.value, name)
    return None


@dataclass
class Mismatches:
    """Differences found in one example: tolerated ones (with their warning) and the rest."""

    failures: list[str] = field(default_factory=list)
    tolerated: dict[tuple[str, str], str] = field(default_factory=dict)
    """(what, url) -> the warning that covers the difference."""

    def check(self, what: str, url: str, want: str, got: str, excuse: str | None) -> None:
        if want == got:
            return
        if excuse is None:
            self.failures.append(f"{what}: {url}: router {want}, artifact {got}")
        else:
            self.tolerated[(what, url)] = excuse


# -- each artifact -------------------------------------------------------------------------------


def parse_dotenv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value[1:-1] if value[:1] == "'" and value[-1:] == "'" else value
    return out


def route_of(decision: Decision) -> str:
    """What a runtime that reads proxy variables can do: use the proxy (CONNECT for a tunnel)
    or go direct."""
    return "direct" if decision.route == "direct" else "proxy"


def check_env(
    s: Settings, urls: Sequence[str], curl: NamespacedCurl, node: NodeWorker, out: Mismatches
) -> None:
    art = env_render.render(s, RenderOptions())
    variables = {
        k: v
        for k, v in parse_dotenv(art.text).items()
        if k.lower() in ("http_proxy", "https_proxy", "no_proxy")
    }
    router = s.router()
    wanted = {url: route_of(router.decide(url)) for url in urls}
    # curl: the proxy variables point at the stand-in; names are pinned to loopback
    for_curl = {k: (curl.proxy if "no_" not in k.lower() else v) for k, v in variables.items()}
    resolve = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not re.fullmatch(r"[0-9.]+|.*:.*", host):
            resolve.append(
                f"{host}:{parts.port or (80 if parts.scheme == 'http' else 443)}:127.0.0.1"
            )
    got: dict[str, list[str]] = {
        "curl": curl.routes(for_curl, urls, sorted(set(resolve))),
        "node": node.env_routes(variables, urls),
        **python_routes(variables, urls),
    }
    for runtime, routes in got.items():
        for url, route in zip(urls, routes, strict=True):
            want = wanted[url]
            excuse = (
                excuse_runtime(runtime, url, want, router, art.warnings) if route != want else None
            )
            out.check(f"env/{runtime}", url, want, route, excuse)


def chart_proxy(d: Decision) -> tuple[str, str, int] | None:
    p = d.proxy_url
    return None if p is None else (p.scheme, p.host, p.port)


def excuse_helm(s: Settings, back: Settings, url: str, warnings: Sequence[str]) -> str | None:
    """The warning of ``render helm`` that covers the loaded-back values routing ``url`` away."""
    router = s.router()
    decision = router.decide(url)
    rule = rule_of(router, decision)
    entry = deciding_entry(rule, decision)
    back_decision = back.router().decide(url)
    one_proxy = warned(warnings, "but the seed chart") or warned(warnings, "seed chart uses")
    if one_proxy and (
        decision.rule == "no-proxy-for-scheme" or (rule and rule.kind == "warehouse")
    ):
        return one_proxy
    if decision.route == "tunnel":
        return warned(warnings, "tunnel_tcp_warehouses is not rendered")
    if back_decision.rule not in {r.rule for r in router.rules()}:
        # an automatic rule the chart's Kubernetes deployment adds (single-vm settings)
        return warned(warnings, "the Helm chart is for Kubernetes")
    if rule is not None and rule.route != rule.plain_route:
        return warned(warnings, f"({rule.rule})")
    if entry is not None:
        return warned(warnings, f"NO_PROXY leaves out {entry.raw}")
    return None


def check_helm(s: Settings, urls: Sequence[str], tmp: Path, out: Mismatches) -> None:
    art = helm_render.render(s, RenderOptions())
    path = tmp / "customizations.yaml"
    path.write_text(art.text)
    back = load_helm_values(path, env={})
    # the chart joins excludedDomains into its components' NO_PROXY: the list the runtimes above
    # read from the env file, whatever the switch says
    excluded = yaml.safe_load(art.text)["externalProxy"]["excludedDomains"]
    out.check("helm/no_proxy", "-", no_proxy_list(s).value, ",".join(excluded), None)
    for original, loaded, what in (
        (s, back, "helm"),
        (s.with_enabled(True), back.with_enabled(True), "helm/switched-on"),
    ):
        for url in urls:
            want, got = original.router().decide(url), loaded.router().decide(url)
            same = want.route == got.route and (
                chart_proxy(want) == chart_proxy(got)
                or warned(art.warnings, "but the seed chart") is not None
            )
            if not same:
                excuse = excuse_helm(original, loaded, url, art.warnings)
                out.check(what, url, want.route, f"{got.route} ({got.rule})", excuse)


def browser_host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return host


def pac_answer(d: Decision) -> str:
    if d.route == "direct" or d.proxy_url is None:
        return "DIRECT"
    p = d.proxy_url
    host = f"[{p.host}]" if ":" in p.host else p.host
    return f"{'HTTPS' if p.scheme == 'https' else 'PROXY'} {host}:{p.port}"


def check_pac(s: Settings, urls: Sequence[str], node: NodeWorker, out: Mismatches) -> None:
    art = pac_render.render(s, RenderOptions())
    answers = node.pac(art.text, [(url, browser_host(url)) for url in urls])
    router = s.router()
    for url, got in zip(urls, answers, strict=True):
        decision = router.decide(url)
        want = pac_answer(decision)
        entry = deciding_entry(rule_of(router, decision), decision)
        excuse = None
        if got != want and entry is not None and entry.port is not None:
            excuse = warned(art.warnings, "not in the PAC file", entry.raw)
        out.check("pac", url, want, got, excuse)


# Squid's own reading of the fragment's ACLs: dstdomain (".d" = d and below, else exact,
# case-insensitive), port, method; http_access lines in order, the first whose ACLs all match
# decides; "!acl" negates.
_ACL = re.compile(r"^acl (\S+) (dstdomain -n|port|method|src) (.+)$")
_ACCESS = re.compile(r"^http_access (allow|deny) (.+)$")


@dataclass
class SquidAcls:
    acls: dict[str, tuple[str, list[str]]]
    access: list[tuple[str, list[str]]]

    @classmethod
    def parse(cls, text: str) -> SquidAcls:
        acls: dict[str, tuple[str, list[str]]] = {}
        access: list[tuple[str, list[str]]] = []
        for line in text.splitlines():
            if m := _ACL.match(line):
                kind, values = m.group(2).split()[0], m.group(3).split()
                acls.setdefault(m.group(1), (kind, []))[1].extend(values)
            elif m := _ACCESS.match(line):
                access.append((m.group(1), m.group(2).split()))
        return cls(acls, access)

    def _matches(self, name: str, host: str, port: int, method: str) -> bool:
        negate = name.startswith("!")
        kind, values = self.acls[name.lstrip("!")]
        if kind == "dstdomain":
            host = host.lower()
            hit = any(
                host == v[1:] or host.endswith(v) if v.startswith(".") else host == v
                for v in (v.lower() for v in values)
            )
        elif kind == "port":
            hit = str(port) in values
        elif kind == "method":
            hit = method in values
        else:
            hit = values == ["all"]
        return hit != negate

    def allows(self, host: str, port: int, method: str) -> bool | None:
        """True/False when the fragment decides; None when it leaves the request to later lines."""
        for verdict, names in self.access:
            if all(self._matches(n, host, port, method) for n in names):
                return verdict == "allow"
        return None


def check_squid(s: Settings, out: Mismatches) -> None:
    art = squid_render.render(s, RenderOptions())
    acls = SquidAcls.parse(art.text)
    for row in in_scope(routing_router(s).settings):
        if row.route == "direct" or row.host == "*":
            continue  # "*" rows: any host, the proxy team adds theirs (a warning says so)
        host = urlsplit(row.url).hostname or ""
        method = "GET" if row.url.startswith("http://") else "CONNECT"
        allowed = acls.allows(host, row.port, method)
        out.check("squid", row.url, "allowed", "allowed" if allowed else "denied", None)


def check_networkpolicy(
    s: Settings, urls: Sequence[str], given: Sequence[str], out: Mismatches
) -> None:
    cidrs = tuple((kind, WAREHOUSE_CIDRS[kind]) for kind in given)
    art = np_render.render(s, RenderOptions(warehouse_cidrs=cidrs))
    blocks: list[tuple[Any, set[int] | None]] = []
    for doc in yaml.safe_load_all(art.text):
        if not doc:
            continue
        for rule in doc["spec"]["egress"]:
            ports = {p["port"] for p in rule["ports"]} if "ports" in rule else None
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    blocks.append((ipaddress.ip_network(peer["ipBlock"]["cidr"]), ports))

    def allowed(address: Any, port: int) -> bool:
        return any(
            address.version == net.version and address in net and (ports is None or port in ports)
            for net, ports in blocks
        )

    router = s.with_enabled(True).router() if s.proxy.configured else s.router()
    checked: list[tuple[str, Decision]] = []
    for url in urls:
        decision = router.decide(url)
        entry = deciding_entry(rule_of(router, decision), decision)
        if entry is None or entry.kind not in ("ip", "cidr"):
            continue  # no address is known for it
        checked.append((url, decision))
    for kind in given:
        wh = WAREHOUSES[kind]
        address = ipaddress.ip_network(WAREHOUSE_CIDRS[kind]).network_address + 7
        scheme = wh.schemes[0] if wh.protocol == "tcp" else "https"
        url = f"{scheme}://{address}:{wh.default_port}/"
        checked.append((url, router.decide(url, warehouse=kind)))
    for url, decision in checked:
        if decision.route != "direct":
            continue
        address = ipaddress.ip_address(decision.target.host_text)
        if address.is_loopback:
            continue  # never meets a NetworkPolicy
        port = decision.target.port or 0
        ok = allowed(address, port)
        out.check("networkpolicy", url, "allowed", "allowed" if ok else "denied", None)


# -- the property --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> Iterator[NodeWorker]:
    with NodeWorker() as worker:
        yield worker


@pytest.fixture(scope="module")
def curl() -> Iterator[NamespacedCurl]:
    with NamespacedCurl() as worker:
        yield worker


@settings(
    max_examples=100,
    derandomize=True,  # the same examples on every run and in CI
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),  # a failure prints its settings; no slow shrinking
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    raw=raw_settings(),
    extra=st.lists(_RANDOM_HOST, max_size=4, unique=True),
    explicit=st.booleans(),
    given_cidrs=st.lists(st.sampled_from(list(WAREHOUSE_CIDRS)), unique=True),
)
def test_every_artifact_gives_the_routers_answer(
    raw: dict[str, Any],
    extra: list[str],
    explicit: bool,
    given_cidrs: list[str],
    node: NodeWorker,
    curl: NamespacedCurl,
    tmp_path: Path,
) -> None:
    s = make(raw)
    urls = destinations(s, extra, explicit)
    out = Mismatches()
    check_env(s, urls, curl, node, out)
    check_helm(s, urls, tmp_path, out)
    check_pac(s, urls, node, out)
    check_squid(s, out)
    check_networkpolicy(s, urls, given_cidrs, out)
    assert not out.failures, "\n".join([f"settings: {raw}", *out.failures[:40]])


# -- the ACL reading above is Squid's ------------------------------------------------------------

SQUID_SETTINGS = {
    "proxy": {"url": "https://proxy.corp.example:3129"},
    "excluded_domains": [".googleapis.com"],
    "warehouses": ["bigquery", "snowflake"],
    "features": OPTIONAL_FEATURES[:2],
}


def connect_status(port: int, target: str) -> int:
    with socket.create_connection((LOOPBACK, port), timeout=10) as conn:
        conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = conn.recv(4096).decode("latin-1")
    return int(head.split()[1])


def test_the_acl_reading_is_squids(origin: FakeOrigin) -> None:
    """A real Squid with a rendered fragment allows exactly the CONNECTs the reading allows."""
    s = make(SQUID_SETTINGS)
    fragment = squid_render.render(s, RenderOptions()).text
    acls = SquidAcls.parse(fragment)
    hosts = sorted(
        {urlsplit(r.url).hostname or "" for r in in_scope(s) if r.port == 443 and r.host != "*"}
        | {"not-listed.example", "evil.carto.com", "bigquery.googleapis.com.evil.test"}
    )
    squid = FragmentSquid(fragment, origin, names=hosts).start()
    try:
        verdicts = {}
        for host in hosts:
            status = connect_status(squid.port, f"{host}:{origin.https_port}")
            verdicts[host] = (acls.allows(host, 443, "CONNECT"), status)
    finally:
        squid.close()
    assert {h for h, (mine, _) in verdicts.items() if mine} >= {"auth.carto.com"}
    assert {h for h, (mine, _) in verdicts.items() if mine is False} >= {"not-listed.example"}
    for host, (mine, status) in verdicts.items():
        assert (status == 200) == bool(mine), (host, mine, status)


# -- the tolerated differences are real, and each is covered by its warning ---------------------

PORT = "entries with a port"
KNOWN_GAPS = [
    pytest.param(
        {"excluded_domains": ["10.0.0.0/8"]},
        "http://10.1.2.3/x",
        {"env/node": "CIDR range(s)", "env/urllib": "CIDR range(s)"},
        id="cidr-node-urllib",
    ),
    pytest.param({}, "http://[::1]/x", {"env/node": "IPv6", "env/urllib": "IPv6"}, id="bare-ipv6"),
    pytest.param(
        {"excluded_domains": ["git.internal:9000"]},
        "http://git.internal:9000/x",
        {"env/curl": "curl and wget ignore them", "pac": "not in the PAC file: git.internal:9000"},
        id="port-curl-and-pac",
    ),
    pytest.param(
        {"excluded_domains": ["build.example:443"]},
        "https://build.example/x",
        {
            "env/urllib": "only when the URL names the port",
            "env/requests": "only when the URL names the port",
            "env/curl": PORT,
            "pac": "build.example:443",
        },
        id="default-port-python",
    ),
    pytest.param(
        {"excluded_domains": ["10.1.2.3:8080"]},
        "http://10.1.2.3:8080/x",
        {"env/requests": "requests never matches an IP", "env/curl": PORT, "pac": "10.1.2.3"},
        id="ip-port-requests",
    ),
    pytest.param(
        {"excluded_domains": ["fd00:1::/32"]},
        "https://[fd00:1::1]/x",
        {
            what: "NO_PROXY leaves out fd00:1::/32"
            for what in ("env/curl", "env/node", "env/urllib", "env/requests", "helm")
        },
        id="ipv6-range-left-out",
    ),
    pytest.param(
        {"proxy": {"url": "http://p.corp.example:3128", "https_url": "https://q.corp:3129"}},
        "http://acme.snowflakecomputing.com/x",
        {
            **{
                what: "(warehouse:snowflake)"
                for what in ("env/curl", "env/node", "env/urllib", "env/requests")
            },
            "helm": "but the seed chart puts one proxy",
        },
        id="direct-for-https-only",
    ),
    pytest.param(
        {"deployment": {"kind": "single-vm"}},
        "https://api.ns.svc/x",
        {"helm": "the Helm chart is for Kubernetes"},
        id="helm-single-vm",
    ),
    pytest.param(
        {"tunnel_tcp_warehouses": True},
        "https://c.redshift.amazonaws.com/x",
        {"helm": "tunnel_tcp_warehouses is not rendered"},
        id="helm-tunnel",
    ),
]


@pytest.mark.parametrize(("change", "url", "expected"), KNOWN_GAPS)
def test_each_tolerated_difference_happens_and_is_warned(
    change: dict[str, Any],
    url: str,
    expected: dict[str, str],
    node: NodeWorker,
    curl: NamespacedCurl,
    tmp_path: Path,
) -> None:
    """The excuses above are not vacuous: each gap really shows, and its warning names it;
    the artifacts not listed agree with the router outright."""
    raw: dict[str, Any] = {"proxy": {"url": "http://proxy.corp.example:3128"}, **change}
    s = make(raw)
    out = Mismatches()
    check_env(s, [url], curl, node, out)
    check_helm(s, [url], tmp_path, out)
    check_pac(s, [url], node, out)
    assert not out.failures
    for what, needle in expected.items():
        assert needle in out.tolerated[(what, url)], (what, out.tolerated)
    assert {w for w, _ in out.tolerated} - {"helm/switched-on"} == set(expected)
