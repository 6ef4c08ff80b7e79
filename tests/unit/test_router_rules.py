"""The router's rules as data agree with its decisions: every consumer builds on them.

For every rule and every entry it holds, a host that entry covers is decided by that rule (its
route and proxy for the URL's scheme), unless an earlier rule covers the host first.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress.noproxy import Entry, NoProxyMatcher, canonical_host
from egress.router import Router, Rule, routing_notes
from egress.settings import Settings, load_environment, load_settings_from_mapping


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env={})


EXCLUDED = [
    ".corp.example",
    "10.0.0.0/8",
    "10.1.2.3",
    "192.168.1.5:9000",
    "git.internal:8443",
    "2001:db8::/32",
    "[fd00::1]",
    "bücher.example",
    "acme.snowflakecomputing.com",
    "localhost",
]
DEPLOYMENT = {"service_ip": "10.96.0.1", "gke_workload_identity": True}

SETTINGS: dict[str, Settings] = {
    "http": make({"proxy": {"url": "http://p:3128"}, "excluded_domains": EXCLUDED}),
    "https": make(
        {
            "proxy": {"url": "https://p:3129"},
            "excluded_domains": EXCLUDED,
            "deployment": DEPLOYMENT,
        }
    ),
    "split": make(
        {
            "proxy": {"url": "http://p:3128", "https_url": "https://q:3129"},
            "excluded_domains": EXCLUDED,
        }
    ),
    "split-reversed": make({"proxy": {"url": "https://p:3129", "https_url": "http://q:3128"}}),
    "https-only": load_environment({"https_proxy": "https://p:3129"}),
    "http-only": load_environment({"http_proxy": "https://p:3129"}),
    "tunnel": make(
        {"proxy": {"url": "http://p:3128"}, "tunnel_tcp_warehouses": True, "warehouses": []}
    ),
    "disabled": make({"proxy": {"url": "https://p:3129", "enabled": False}}),
    "nothing": make({"excluded_domains": [".corp.example"]}),
    "everything": make({"proxy": {"url": "http://p:3128"}, "excluded_domains": ["*", ".x"]}),
    "single-vm": make({"proxy": {"url": "http://p:3128"}, "deployment": {"kind": "single-vm"}}),
}


def covered_hosts(entry: Entry) -> list[tuple[str, int | None]]:
    """(URL host, explicit port) pairs that ``entry`` covers."""
    port = entry.port
    if entry.kind == "domain":
        return [(entry.value, port), (f"a-b.{entry.value}", port), (f"x.y.{entry.value}", port)]
    if entry.kind == "ip":
        address = ipaddress.ip_address(entry.value)
        host = f"[{address}]" if address.version == 6 else str(address)
        return [(host, port)]
    if entry.kind == "cidr":
        network = ipaddress.ip_network(entry.value)
        picks = {network.network_address, network.broadcast_address}
        if network.num_addresses > 2:
            picks.add(network.network_address + network.num_addresses // 2)
        return [(f"[{a}]" if a.version == 6 else str(a), port) for a in sorted(picks)]
    return [("anything.example", None), ("10.9.8.7", 8080)]


def first_rule(rules: tuple[Rule, ...], url_host: str, port: int) -> Rule:
    """The first rule that covers the host, read from the rules' own data (a test oracle)."""
    host = canonical_host(url_host.strip("[]"))
    for rule in rules:
        if rule.covers_everything:
            return rule
        if rule.parsed and NoProxyMatcher.from_entries(rule.parsed).match(host, port):
            return rule
    raise AssertionError("no rule covers it, not even default")


def check_host(router: Router, scheme: str, url_host: str, port: int | None) -> None:
    effective = port if port is not None else {"http": 80, "https": 443}[scheme]
    url = f"{scheme}://{url_host}:{port}/" if port is not None else f"{scheme}://{url_host}/"
    decision = router.decide(url)
    rule = first_rule(router.rules(), url_host, effective)
    assert decision.route == rule.route_for(scheme), (url, rule.rule, decision.rule)
    assert decision.proxy_url == rule.via_for(scheme), (url, rule.rule)
    if decision.rule == "no-proxy-for-scheme":
        # a warehouse or the default with no proxy for this scheme: the rule says direct
        assert rule.kind in ("warehouse", "default") and rule.route_for(scheme) == "direct"
    else:
        assert decision.rule == rule.rule, url


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_entry_of_every_rule_decides_as_its_rule_says(name: str) -> None:
    router = SETTINGS[name].router()
    checked = 0
    for rule in router.rules():
        for entry in rule.parsed:
            for url_host, port in covered_hosts(entry):
                for scheme in ("http", "https"):
                    check_host(router, scheme, url_host, port)
                    checked += 1
    assert checked > 20


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_scheme_of_every_rule_decides_as_its_rule_says(name: str) -> None:
    router = SETTINGS[name].router()
    rules = router.rules()
    for rule in rules:
        for scheme in rule.schemes:
            decision = router.decide(f"{scheme}://db.example.com/x")
            earlier = next(r for r in rules if r.covers_everything or r is rule)
            assert decision.route == earlier.route, (scheme, earlier.rule)
            assert decision.proxy_url == earlier.via, scheme


@pytest.mark.parametrize("name", list(SETTINGS))
def test_a_host_no_rule_names_takes_the_default(name: str) -> None:
    router = SETTINGS[name].router()
    for scheme in ("http", "https"):
        check_host(router, scheme, "nothing-names-this.example", None)


_LABEL = st.sampled_from(["a", "corp", "example", "svc", "x", "cluster", "local", "metadata"])
_NAME = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)
_ENTRY = st.one_of(
    _NAME,
    _NAME.map(lambda n: "." + n),
    _NAME.map(lambda n: f"{n}:8443"),
    st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "10.1.2.3:80", "fd00::/8", "*"]),
)
_HOST = st.one_of(
    _NAME,
    st.sampled_from(["10.1.2.3", "10.2.0.1", "11.0.0.1", "[fd00::5]", "127.0.0.9", "[::1]"]),
    st.sampled_from(["acme.snowflakecomputing.com", "x.cloud.databricks.com", "localhost"]),
    st.sampled_from(["bigquery.googleapis.com", "c.redshift.amazonaws.com", "169.254.169.254"]),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    url=st.sampled_from(["http://p:3128", "https://p:3129"]),
    https_url=st.sampled_from([None, "http://q:3128", "https://q:3129"]),
    excluded=st.lists(_ENTRY, max_size=5),
    kind=st.sampled_from(["kubernetes", "single-vm"]),
    gke=st.booleans(),
    enabled=st.booleans(),
    tunnel=st.booleans(),
    host=_HOST,
    port=st.sampled_from([None, 80, 443, 8443]),
)
def test_generated_settings_decide_as_their_rules_say(
    url: str,
    https_url: str | None,
    excluded: list[str],
    kind: str,
    gke: bool,
    enabled: bool,
    tunnel: bool,
    host: str,
    port: int | None,
) -> None:
    s = make(
        {
            "proxy": {"url": url, "https_url": https_url, "enabled": enabled},
            "excluded_domains": excluded,
            "deployment": {"kind": kind, "gke_workload_identity": gke},
            "tunnel_tcp_warehouses": tunnel,
        }
    )
    for scheme in ("http", "https"):
        check_host(s.router(), scheme, host, port)


def test_rules_carry_kind_entries_and_routes() -> None:
    rules = {r.rule: r for r in SETTINGS["https"].router().rules()}
    assert rules["auto:loopback"].kind == "auto"
    assert [e.kind for e in rules["auto:loopback"].parsed] == ["domain", "cidr", "ip"]
    assert rules["excluded:10.0.0.0/8"].parsed == (Entry("10.0.0.0/8", "cidr", "10.0.0.0/8"),)
    snowflake = rules["warehouse:snowflake"]
    assert (snowflake.kind, snowflake.route, snowflake.entries) == (
        "warehouse",
        "direct",
        (".snowflakecomputing.com", "snowflake://"),
    )
    assert rules["warehouse:postgres"].schemes == ("postgresql", "postgres")
    assert rules["default"].route == "proxy" and str(rules["default"].via) == "https://p:3129"


def test_snowflake_route_follows_the_kind_of_proxy_not_the_warehouses_list() -> None:
    """S12, with `warehouses: [bigquery]`: the router sends Snowflake direct all the same."""
    s = make({"proxy": {"url": "https://p:3129"}, "warehouses": ["bigquery"]})
    rule = next(r for r in s.router().rules() if r.rule == "warehouse:snowflake")
    assert rule.route == "direct"
    assert s.router().decide("https://acme.snowflakecomputing.com/").route == "direct"
    (note,) = routing_notes(s.router())
    assert "Snowflake cannot connect through an https:// proxy" in note.message
    assert "network policy" in note.hint


@pytest.mark.parametrize(
    ("name", "count"),
    [("http", 0), ("https", 1), ("split", 1), ("disabled", 0), ("nothing", 0), ("tunnel", 0)],
)
def test_routing_notes(name: str, count: int) -> None:
    notes = routing_notes(SETTINGS[name].router())
    assert len(notes) == count
    if name == "split":
        assert "for https:// destinations (the others go through the proxy)" in notes[0].message


def test_switched_off_comes_first_and_routes_the_rest_as_switched_on() -> None:
    rules = SETTINGS["disabled"].router().rules()
    assert rules[0].rule == "proxy-disabled" and rules[0].covers_everything
    on = SETTINGS["disabled"].with_enabled(True).router().rules()
    assert rules[1:] == on


def test_ignored_tokens_are_exposed() -> None:
    s = make({"proxy": {"url": "http://p:3128"}, "excluded_domains": ["ex*.com", "ok.example"]})
    assert [i.token for i in s.router().ignored] == ["ex*.com"]
