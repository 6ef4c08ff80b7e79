"""The seed chart's ``externalProxy``, ``trustedCACerts`` and ``clusterDomain`` as a
``customizations.yaml`` fragment.

The chart adds no exclusion by itself (its ``excludedDomains`` default is ``[]``) and joins the
list into its components' ``NO_PROXY``, so the fragment carries the NO_PROXY list every artifact
shares (:mod:`egress.render.bypass`): every rule the router sends direct (loopback, ``.svc``,
``.svc.<cluster_domain>``, the Kubernetes API ClusterIP when known, the GKE metadata server with
Workload Identity, the operator's list, and the warehouses that go direct, such as Databricks and
Snowflake behind an https:// proxy), each block under a comment naming its rule. Loading the
fragment back with ``egress.settings.load_helm_values`` routes every URL as the original settings
do, except what the warnings name.

What the chart cannot express (Basic auth, different proxies per scheme, ``tunnel_tcp_warehouses``,
``resolve``) becomes an :class:`~egress.render.Artifact` warning; nothing is dropped silently.

>>> from egress.settings import Settings
>>> art = render(Settings.from_proxy("http://proxy.corp:3128"), RenderOptions())
>>> import yaml; xp = yaml.safe_load(art.text)["externalProxy"]
>>> xp["host"], xp["port"], xp["type"]
('proxy.corp', 3128, 'http')
>>> xp["excludedDomains"][:6]
['localhost', '.localhost', '127.0.0.1', '127.0.0.0/8', '::1', 'svc']
"""

from __future__ import annotations

import json

from egress.render import Artifact, RenderOptions, check_env_size, negotiate_warning
from egress.render.bypass import no_proxy_list
from egress.settings import ProxyURL, Settings
from egress.settings.fields import Problems
from egress.settings.files import CA_LIMIT, read_regular_file


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _chart_proxy(settings: Settings, warnings: list[str]) -> ProxyURL | None:
    """The one proxy URL the chart puts into HTTP_PROXY, HTTPS_PROXY and GRPC_PROXY."""
    proxy = settings.proxy
    http, https = proxy.http_proxy, proxy.https_proxy
    if http is not None and https is not None and http != https:
        warnings.append(
            f"proxy.url ({http}) and proxy.https_url ({https}) differ, but the seed chart puts "
            f"one proxy into HTTP_PROXY and HTTPS_PROXY: rendered {https}, so http:// "
            "destinations go through it too; give both schemes one proxy to match egress"
        )
        return https
    if (http is None) != (https is None):
        chosen = https or http
        missing = "http://" if http is None else "https://"
        warnings.append(
            f"no proxy is configured for {missing} destinations, but the seed chart uses "
            f"{chosen} for every scheme, so {missing} destinations go through it too"
        )
        return chosen
    return https


def _exclusions(settings: Settings, warnings: list[str]) -> list[tuple[str, list[str]]]:
    """(comment, entries) blocks for ``excludedDomains``: the NO_PROXY list every artifact
    shares, one block per rule (the chart joins the list into its components' NO_PROXY)."""
    nop = no_proxy_list(settings)
    check_env_size("NO_PROXY", nop.value)  # the chart joins the list into every NO_PROXY
    warnings.extend(nop.warnings)
    if nop.everything:
        return [("a rule covers every host", ["*"])]
    blocks: list[tuple[str, list[str]]] = []
    for group in nop.groups:
        if group.kind == "excluded":
            comment = "from excluded_domains (yours)"
        else:
            comment = f"automatic ({group.rule}): {group.reason}"
        blocks.append((comment, list(group.tokens)))
    return blocks


def _ca_pem(settings: Settings, warnings: list[str]) -> str | None:
    proxy = settings.proxy
    parts: list[str] = []
    if proxy.ca_pem:
        parts.append(proxy.ca_pem.strip() + "\n")
    if proxy.ca_file:
        problems = Problems()
        fix = "fix the path or paste the PEM into trustedCACerts.value"
        data = read_regular_file(proxy.ca_file, "proxy.ca_file", CA_LIMIT, problems, fix=fix)
        if data is not None:
            parts.append(data.decode("utf-8", errors="replace").strip() + "\n")
        for problem in problems.errors:
            warnings.append(
                f"{problem.field}: {problem.message}; trustedCACerts was not rendered: {fix}"
            )
    return "".join(parts) or None


def _limitations(settings: Settings, warnings: list[str]) -> None:
    proxy = settings.proxy
    if proxy.username:
        warnings.append(
            f"proxy.username ({proxy.username}) is not rendered: the seed chart has no proxy "
            "authentication, and credentials in connectionString would land in ConfigMaps in "
            "clear text; use egress's own transport, or a proxy that does not ask this platform "
            "for credentials"
        )
    if settings.tunnel_tcp_warehouses:
        warnings.append(
            "tunnel_tcp_warehouses is not rendered: the seed chart has no such setting, so its "
            "PostgreSQL and Redshift connections go direct; allow them in the network policy"
        )
    if settings.resolve:
        hosts = ", ".join(host for host, _ in settings.resolve)
        warnings.append(
            f"resolve ({hosts}) is not rendered: the seed chart cannot override name "
            "resolution; use hostAliases or your cluster DNS"
        )
    if not proxy.verify and proxy.configured:
        warnings.append(
            "proxy.verify is false, rendered as sslRejectUnauthorized: false, which the chart "
            "turns into NODE_TLS_REJECT_UNAUTHORIZED=0: certificate checks of every TLS "
            "connection of those pods are off, not only the proxy's"
        )
    if settings.deployment.kind != "kubernetes":
        warnings.append(
            f"deployment.kind is {settings.deployment.kind}; the Helm chart is for Kubernetes "
            "(render env for a single VM)"
        )


def render(settings: Settings, options: RenderOptions) -> Artifact:
    """The fragment as YAML text, with a header comment, and what it could not express."""
    del options  # nothing on the command line changes this artifact
    warnings: list[str] = []
    proxy = settings.proxy
    url = _chart_proxy(settings, warnings)
    negotiate = negotiate_warning(settings)
    if negotiate is not None:
        warnings.append(negotiate)
    _limitations(settings, warnings)
    ca = _ca_pem(settings, warnings)
    exclusions = _exclusions(settings, warnings)

    lines = [
        "# customizations.yaml fragment for the seed chart's external proxy, rendered by",
        f"# `egress render helm` from {settings.source}. Merge it into your customizations.yaml.",
        "# The chart adds no exclusion itself: the entries marked 'automatic' below are the ones",
        "# egress adds on its own; keep them. Switch the proxy on in the admin console as well.",
        f"clusterDomain: {_q(settings.deployment.cluster_domain)}",
        "externalProxy:",
        f"  enabled: {'true' if proxy.enabled else 'false'}",
    ]
    if url is not None:
        if ":" in url.host:
            lines.append(
                "  # IPv6 proxy: host/port would render as scheme://::1:port, so use a URL"
            )
            lines.append(f"  connectionString: {_q(f'{url.scheme}://[{url.host}]:{url.port}')}")
        else:
            lines.append(f"  host: {_q(url.host)}")
            lines.append(f"  port: {url.port}")
            lines.append(f"  type: {_q(url.scheme)}")
    lines.append(f"  sslRejectUnauthorized: {'true' if proxy.verify else 'false'}")
    if exclusions:
        lines.append("  excludedDomains:")
        for comment, entries in exclusions:
            lines.append(f"    # {comment}")
            lines.extend(f"    - {_q(entry)}" for entry in entries)
    else:
        lines.append("  excludedDomains: []")

    if ca is None and proxy.ca_configmap is None:
        lines.append("# trustedCACerts: none (the proxy's certificate chains to a public CA)")
    else:
        lines.append("trustedCACerts:")
        if ca is not None:
            lines.append("  value: |")
            lines.extend(f"    {line}" if line else "" for line in ca.rstrip("\n").split("\n"))
        if proxy.ca_configmap is not None:
            name, key = proxy.ca_configmap
            if ca is not None:
                warnings.append(
                    f"trustedCACerts.existingConfigmap ({name}) is ignored by the chart while "
                    "trustedCACerts.value is set"
                )
            lines.append("  existingConfigmap:")
            lines.append(f"    name: {_q(name)}")
            lines.append(f"    key: {_q(key)}")
    return Artifact("\n".join(lines) + "\n", tuple(warnings))
