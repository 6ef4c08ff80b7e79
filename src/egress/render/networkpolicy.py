"""Kubernetes NetworkPolicy objects that let the platform's pods reach only what their routes need.

One ``networking.k8s.io/v1`` NetworkPolicy per rule, all selecting the same pods, all with
``policyTypes: [Egress]``:

- ``dns``: kube-dns in kube-system, UDP and TCP 53;
- ``proxy``: the customer's proxy (its IP when the URL names one, else ``--proxy-cidr``), on the
  port of its URL; both proxies when http and https differ;
- ``in-cluster``: every pod of the same namespace (``in_cluster=False`` leaves it out);
- one per automatic rule with addresses (``auto:kubernetes-api``, ``auto:gke-metadata``), and
  ``excluded`` for the operator's: every IP and CIDR entry the router sends direct, on its port
  when it names one (loopback never meets a NetworkPolicy; names cannot be allowed, so those
  are a warning);
- ``warehouse:<kind>``: each warehouse in use that the router sends direct, on its port, to the
  CIDRs given with ``--warehouse-cidr KIND=CIDR`` (never 0.0.0.0/0 unless the operator gives it).

Everything routing-related comes from the router's rules (``Router.rules()``) and decisions.

Kubernetes denies everything else by itself: once any policy with ``Egress`` in its
``policyTypes`` selects a pod, that pod may only open connections some such policy allows (the
union of them all). Each object says which rule it serves in its ``egress.dev/rule`` and
``egress.dev/reason`` annotations and in a YAML comment.

>>> from egress.settings import Settings
>>> art = render(Settings.from_proxy("http://10.0.5.10:3128", env={}), RenderOptions())
>>> [line for line in art.text.splitlines() if line.startswith("  name:")]
['  name: egress-dns', '  name: egress-proxy', '  name: egress-in-cluster']
"""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from egress.noproxy import Entry
from egress.render import Artifact, RenderOptions
from egress.router import Router, Rule
from egress.settings import ProxyURL, Settings

__all__ = ["GKE_METADATA_ENDPOINTS", "Policy", "policies", "render"]

MANAGED_BY = {"app.kubernetes.io/managed-by": "egress"}
RULE_ANNOTATION = "egress.dev/rule"
REASON_ANNOTATION = "egress.dev/reason"

KUBE_DNS_PEER: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}

GKE_METADATA_ENDPOINTS: tuple[tuple[str, int], ...] = (
    ("169.254.169.254/32", 80),
    ("169.254.169.252/32", 988),
)
"""The GKE metadata server: 169.254.169.254:80 with Dataplane V2, 169.254.169.252:988 without."""


@dataclass(frozen=True)
class Served:
    """What a NetworkPolicy must know about a rule's hosts that the rule cannot say: the
    addresses they are really served from, and a note for the operator."""

    endpoints: tuple[tuple[str, int, str], ...] = ()
    note: str = ""


SERVED: dict[str, Served] = {
    "auto:gke-metadata": Served(
        endpoints=(
            (
                "169.254.169.252/32",
                988,
                "where GKE without Dataplane V2 serves 169.254.169.254 (GKE's Workload Identity "
                "documentation)",
            ),
        )
    ),
    "auto:kubernetes-api": Served(
        note="Most network plugins apply policies after kube-proxy has translated the "
        "ClusterIP, so also allow the API server's endpoints "
        "(kubectl get endpoints kubernetes -n default)."
    ),
}
"""Keyed by rule id; deployment facts, not routing: the routes stay the router's."""


@dataclass(frozen=True)
class Policy:
    """One NetworkPolicy: the rule it serves, why, the comment above it, and the object."""

    rule: str
    reason: str
    comment: tuple[str, ...]
    body: dict[str, Any]


def _cidr_of(host: str) -> str | None:
    """``host/32`` (or ``/128``) when the proxy host is an IP literal, else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return f"{address}/{address.max_prefixlen}"


class _Builder:
    def __init__(
        self,
        settings: Settings,
        router: Router,
        options: RenderOptions,
        pod_labels: Mapping[str, str] | None,
        in_cluster: bool,
    ) -> None:
        self.settings = settings
        self.router = router
        self.options = options
        self.pod_labels = dict(pod_labels or {})
        self.in_cluster = in_cluster
        self.warnings: list[str] = []
        self.policies: list[Policy] = []

    # -- one object ----------------------------------------------------------------------------

    def add(
        self, suffix: str, rule: str, reason: str, comment: Sequence[str], egress: list[Any]
    ) -> None:
        metadata: dict[str, Any] = {"name": f"{self.options.name}-{suffix}"}
        if self.options.namespace:
            metadata["namespace"] = self.options.namespace
        metadata["labels"] = dict(MANAGED_BY)
        metadata["annotations"] = {RULE_ANNOTATION: rule, REASON_ANNOTATION: reason}
        selector: dict[str, Any] = {"matchLabels": self.pod_labels} if self.pod_labels else {}
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata,
            "spec": {"podSelector": selector, "policyTypes": ["Egress"], "egress": egress},
        }
        self.policies.append(Policy(rule, reason, (f"rule {rule}: {reason}", *comment), body))

    # -- the rules -----------------------------------------------------------------------------

    def dns(self) -> None:
        self.add(
            "dns",
            "dns",
            "Every pod resolves names through kube-dns, including the proxy's name.",
            (
                "kube-dns (CoreDNS) in kube-system, UDP and TCP 53. With NodeLocal DNSCache, or a "
                "DNS that listens elsewhere (OpenShift: port 5353), add that address and port.",
            ),
            [{"to": [KUBE_DNS_PEER], "ports": [_port("UDP", 53), _port("TCP", 53)]}],
        )

    def proxy(self) -> None:
        proxy = self.settings.proxy
        urls: list[ProxyURL] = []
        for url in (proxy.http_proxy, proxy.https_proxy):
            if url is not None and url not in urls:
                urls.append(url)
        if not urls:
            return
        given = self.options.proxy_cidr
        given_net = ipaddress.ip_network(given, strict=False) if given else None
        targets: dict[str, list[int]] = {}
        missing: list[str] = []
        for url in urls:
            cidr = _cidr_of(url.host)
            if cidr is not None:
                address = ipaddress.ip_address(url.host)
                if given_net is not None and address not in given_net:
                    self.warnings.append(
                        f"--proxy-cidr {given} does not contain the proxy's address {url.host}; "
                        f"the proxy rule allows {cidr}, taken from the proxy URL"
                    )
            elif given_net is not None:
                cidr = str(given_net)
            else:
                missing.append(str(url))
                continue
            ports = targets.setdefault(cidr, [])
            if url.port not in ports:
                ports.append(url.port)
        if missing:
            self.warnings.append(
                f"the proxy rule needs --proxy-cidr: the proxy {', '.join(missing)} is named by "
                "host name and a NetworkPolicy can only allow addresses, so no rule lets the "
                "pods reach it (give the proxy's address, e.g. --proxy-cidr 10.0.5.10/32)"
            )
        if not targets:
            return
        shown = ", ".join(proxy.display(u) or "" for u in urls)
        reason = (
            f"Every destination that is not excluded goes through the proxy {shown}, on "
            "the port of its URL."
        )
        egress = [
            {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [_port("TCP", p) for p in ports]}
            for cidr, ports in targets.items()
        ]
        comment = [f"{cidr} TCP {', '.join(map(str, ports))}" for cidr, ports in targets.items()]
        tunnelled = [r.title for r in self.router.rules() if r.route == "tunnel"]
        if tunnelled:
            comment.append(f"{' and '.join(tunnelled)} ride this rule too (tunnel_tcp_warehouses).")
        self.add("proxy", "proxy", reason, comment, egress)

    def cluster(self) -> None:
        if not self.in_cluster:
            return
        self.add(
            "in-cluster",
            "in-cluster",
            "The platform's components talk to each other inside the namespace, never through "
            "the proxy (.svc names go direct).",
            (
                "Every pod of this namespace, every port. Services in other namespaces need their "
                "own rule, and so does the Kubernetes API: policies see the API server's endpoint "
                "addresses (kubectl get endpoints kubernetes -n default), not its ClusterIP.",
            ),
            [{"to": [{"podSelector": {}}]}],
        )

    def addresses(self, router: Router) -> None:
        """One policy per automatic rule, and one for ``excluded_domains``, allowing the IP and
        CIDR entries the router sends direct (loopback never meets a NetworkPolicy); names
        cannot be allowed by a NetworkPolicy, so those become a warning."""
        excluded: list[tuple[Rule, Entry]] = []
        names: list[str] = []
        for rule in router.rules():
            if rule.kind not in ("auto", "excluded") or "direct" not in _routes(rule):
                continue
            reached = [e for e in rule.parsed if _reached(router, rule, e)]
            if rule.kind == "excluded":
                excluded += [(rule, e) for e in reached if e.kind in ("ip", "cidr")]
                names += [e.raw for e in reached if e.kind in ("domain", "all")]
                continue
            peers = [e for e in reached if e.kind in ("ip", "cidr") and not _loopback(e)]
            served = SERVED.get(rule.rule, Served())
            if not peers and not served.endpoints:
                continue
            comment = [f"{_cidr(e)} {_ports_text(e.port)} ({e.raw})" for e in peers]
            comment += [f"{cidr} TCP {port}: {why}" for cidr, port, why in served.endpoints]
            if served.note:
                comment.append(served.note)
            egress = [_ip_rule(e) for e in peers]
            egress += [
                {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [_port("TCP", port)]}
                for cidr, port, _ in served.endpoints
            ]
            self.add(
                rule.rule.partition(":")[2] or rule.rule,
                rule.rule,
                f"{rule.sentence[:1].upper()}{rule.sentence[1:]}.",
                comment,
                egress,
            )
        peers = [e for _, e in excluded if not _loopback(e)]
        if peers:
            self.add(
                "excluded",
                "excluded",
                "The addresses in excluded_domains go direct.",
                [f"{_cidr(e)} {_ports_text(e.port)} ({e.raw})" for e in peers],
                [_ip_rule(e) for e in peers],
            )
        if names:
            self.warnings.append(
                f"excluded_domains ({', '.join(names)}) go direct, and no rule here allows them: "
                "a NetworkPolicy cannot name hosts, so add a rule for their addresses if the "
                "platform reaches them"
            )

    def warehouses(self, router: Router) -> None:
        rules = router.rules()
        by_name = {r.rule.partition(":")[2]: r for r in rules if r.kind == "warehouse"}
        cidrs: dict[str, list[str]] = {}
        for kind, cidr in self.options.warehouse_cidrs:
            listed = cidrs.setdefault(kind, [])
            if cidr not in listed:
                listed.append(cidr)
        kinds = [k for k in self.settings.warehouses if k in by_name]
        for kind in cidrs:
            if kind not in kinds and kind in by_name:
                kinds.append(kind)
                self.warnings.append(
                    f"--warehouse-cidr {kind}=... names a warehouse that is not in the settings' "
                    "warehouses; its rule is rendered anyway"
                )
        for kind in cidrs:
            if kind not in by_name:
                self.warnings.append(f"--warehouse-cidr {kind}=... names no known warehouse")
        for kind in kinds:
            rule = by_name[kind]
            deciding = _deciding_rule(router, rule)
            route = deciding.route
            given = cidrs.get(kind, [])
            port = rule.port or 443
            if route != "direct":
                if given:
                    how = "is tunnelled through" if route == "tunnel" else "goes through"
                    self.warnings.append(
                        f"--warehouse-cidr {kind}={','.join(given)} is ignored: {rule.title} "
                        f"{how} the proxy, which the proxy rule already allows"
                    )
                continue
            if not given:
                self.warnings.append(
                    f"{rule.title} goes direct (TCP {port}) but no --warehouse-cidr "
                    f"{kind}=CIDR was given, so no rule allows it and these policies deny it"
                )
                continue
            if deciding is rule:
                why = rule.sentence
            elif deciding.kind == "disabled":
                why = f"{deciding.sentence[:1].upper()}{deciding.sentence[1:]}"
            else:
                why = f"Rule {deciding.rule} sends every such connection direct"
            reason = f"{why}, so {rule.title} goes direct, to TCP {port}."
            self.add(
                f"warehouse-{kind}",
                rule.rule,
                reason,
                (
                    f"{', '.join(given)} TCP {port} (from --warehouse-cidr); change the "
                    "port here if the warehouse listens elsewhere.",
                ),
                [
                    {
                        "to": [{"ipBlock": {"cidr": cidr}} for cidr in given],
                        "ports": [_port("TCP", port)],
                    }
                ],
            )


def _routes(rule: Rule) -> set[str]:
    return {rule.route, rule.plain_route}


def _reached(router: Router, rule: Rule, entry: Entry) -> bool:
    """Whether the router decides the entry's own host by this rule (no earlier rule has it),
    or sends everything direct anyway."""
    if entry.kind == "all":
        return True
    host = _cidr(entry).split("/")[0]
    probe = f"[{host}]" if ":" in host else host
    port = f":{entry.port}" if entry.port is not None else ""
    decision = router.decide(f"https://{probe}{port}/")
    if decision.rule == rule.rule:
        return True
    # still direct when the rule that has it covers everything without a proxy (the switch)
    deciding = next((r for r in router.rules() if r.rule == decision.rule), None)
    return deciding is not None and deciding.kind == "disabled"


def _deciding_rule(router: Router, rule: Rule) -> Rule:
    """The rule that decides a warehouse's own connections: itself, or an earlier rule that
    covers them all (the switch, a ``*`` exclusion, an exclusion of its domain)."""
    rules = router.rules()
    for earlier in rules[: rules.index(rule)]:
        if earlier.covers_everything:
            return earlier
    if rule.parsed:
        decided = router.decide(f"https://{rule.parsed[0].value}/")
        return next((r for r in rules if r.rule == decided.rule), rule)
    return rule


def _loopback(entry: Entry) -> bool:
    network = ipaddress.ip_network(_cidr(entry))
    return network.is_loopback


def _cidr(entry: Entry) -> str:
    """The entry as a CIDR (``10.0.0.1/32``, ``fd00::1/128``); a domain's name as it is."""
    if entry.kind == "ip":
        address = ipaddress.ip_address(entry.value)
        return f"{address}/{address.max_prefixlen}"
    return entry.value


def _ports_text(port: int | None) -> str:
    return "every port" if port is None else f"TCP {port}"


def _ip_rule(entry: Entry) -> dict[str, Any]:
    rule: dict[str, Any] = {"to": [{"ipBlock": {"cidr": _cidr(entry)}}]}
    if entry.port is not None:
        rule["ports"] = [_port("TCP", entry.port)]
    return rule


def _port(protocol: str, port: int) -> dict[str, Any]:
    return {"protocol": protocol, "port": port}


def policies(
    settings: Settings,
    options: RenderOptions,
    *,
    pod_labels: Mapping[str, str] | None = None,
    in_cluster: bool = True,
) -> tuple[list[Policy], list[str]]:
    """The policies for ``settings`` and the warnings about what they cannot allow.

    The routes are those with the proxy switched on: the admin-console switch changes at run
    time, a NetworkPolicy does not.
    """
    proxy = settings.proxy
    router = settings.with_enabled(True).router() if proxy.configured else settings.router()
    b = _Builder(settings, router, options, pod_labels, in_cluster)
    if settings.deployment.kind != "kubernetes":
        b.warnings.append(
            f"deployment.kind is {settings.deployment.kind}: NetworkPolicy applies only to "
            "Kubernetes"
        )
    if not proxy.configured:
        b.warnings.append(
            "no proxy is configured, so every connection goes direct; these policies allow only "
            "DNS, in-cluster traffic and the warehouses given with --warehouse-cidr, and deny "
            "the rest"
        )
    elif not proxy.enabled:
        b.warnings.append(
            "the proxy is switched off (proxy.enabled: false), so every connection goes direct "
            "and these policies deny it; they describe the routes with the proxy switched on"
        )
    default = next(r for r in router.rules() if r.kind == "default")
    for family, route, other in (
        ("http", default.plain_route, default.route),
        ("https", default.route, default.plain_route),
    ):
        if route == "direct" and other != "direct":
            b.warnings.append(
                f"no proxy is configured for {family}:// destinations, so they go direct "
                "(rule no-proxy-for-scheme) and these policies deny them: a NetworkPolicy "
                f"cannot allow every address; configure a proxy for {family}:// as well"
            )
    b.dns()
    b.proxy()
    b.cluster()
    b.addresses(router)
    b.warehouses(router)
    return b.policies, b.warnings


def _comment(lines: Sequence[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, width=96, break_on_hyphens=False) or [""]
    return [f"# {line}".rstrip() for line in out]


def render(
    settings: Settings,
    options: RenderOptions,
    *,
    pod_labels: Mapping[str, str] | None = None,
    in_cluster: bool = True,
) -> Artifact:
    """Multi-document YAML: one NetworkPolicy per rule, each after a comment naming it."""
    if pod_labels is None and options.pod_labels:
        pod_labels = dict(options.pod_labels)
    in_cluster = in_cluster and options.in_cluster
    items, warnings = policies(settings, options, pod_labels=pod_labels, in_cluster=in_cluster)
    selected = (
        ", ".join(f"{k}={v}" for k, v in pod_labels.items())
        if pod_labels
        else "every pod of the namespace"
    )
    lines = _comment(
        [
            "egress render networkpolicy: what the platform's pods may connect to.",
            f"Rendered from {settings.source}; pods selected: {selected}.",
            "Deny the rest: once a policy with Egress in its policyTypes selects a pod, Kubernetes "
            "allows that pod only the connections some such policy allows (their union), so "
            "everything not below is denied. Other policies selecting the same pods add to it.",
        ]
    )
    for item in items:
        lines.append("---")
        lines += _comment(item.comment)
        lines.append(yaml.safe_dump(item.body, sort_keys=False, width=1000).rstrip())
    return Artifact("\n".join(lines) + "\n", tuple(warnings))
