"""The seed chart's Helm values loader: an operator's ``customizations.yaml``, read as it is.

::

    externalProxy:
      enabled: true
      host: proxy.corp.example        # or connectionString: http://proxy.corp.example:3128
      port: 3128
      type: http                      # http | https
      excludedDomains: [localhost, .svc.cluster.local]    # or one comma-separated string
      sslRejectUnauthorized: true     # verify the proxy's certificate
      sslCA: null                     # inline PEM, or sslCAConfigmap: {name, key}
    trustedCACerts: {value: null, existingConfigmap: {name: null, key: ca.crt}}
    clusterDomain: cluster.local

Other keys of the chart are not egress's business and are left alone; an unknown key under
``externalProxy`` is a warning (a typo there would silently change nothing).

>>> s = settings_from_helm_mapping({"externalProxy": {"enabled": True, "host": "p.corp",
...     "port": 3128, "type": "http", "excludedDomains": "localhost,.corp"}}, env={})
>>> str(s.proxy.https_proxy), s.excluded_domains
('http://p.corp:3128', ('localhost', '.corp'))
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from egress.settings.fields import Problems, boolean, key_field, mapping, text, text_list
from egress.settings.finish import finish
from egress.settings.model import ProxyURL, Settings
from egress.settings.proxy_url import parse_proxy_url, proxy_from_parts
from egress.settings.sections import deployment, proxy_settings
from egress.settings.yaml_file import load_yaml_file

HELM_PROXY_KEYS = (
    "enabled",
    "host",
    "port",
    "type",
    "excludedDomains",
    "sslRejectUnauthorized",
    "sslCA",
    "sslCAConfigmap",
    "connectionString",
)


def load_helm_values(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> Settings:
    """Load the seed chart's ``customizations.yaml`` (a regular file of at most 1 MiB)."""
    raw = load_yaml_file(path, "helm-values")
    return settings_from_helm_mapping({} if raw is None else raw, source=str(path), env=env)


def settings_from_helm_mapping(
    raw: object, *, source: str = "helm-values", env: Mapping[str, str] | None = None
) -> Settings:
    """Validate a parsed seed Helm values structure."""
    env = os.environ if env is None else env
    p = Problems()
    top = mapping(raw, "", p)
    xp = mapping(top.get("externalProxy"), "externalProxy", p)
    for key in xp:
        if key not in HELM_PROXY_KEYS:
            p.warn(
                key_field("externalProxy.", key), "is not a key of the seed chart and was ignored"
            )
    enabled = boolean(xp.get("enabled"), "externalProxy.enabled", p, default=False)

    url: ProxyURL | None = None
    if xp.get("connectionString") not in (None, ""):
        url = parse_proxy_url(xp.get("connectionString"), "externalProxy.connectionString", p)
    else:
        url = proxy_from_parts(xp, "externalProxy.", p)
        if enabled and url is None and not p.errors:
            p.error(
                "externalProxy.host",
                "is empty while externalProxy.enabled is true",
                "set externalProxy.host, port and type, or externalProxy.connectionString",
            )

    ca_pem_parts: list[str] = []
    pems: dict[str, str | None] = {}
    tc = mapping(top.get("trustedCACerts"), "trustedCACerts", p)
    for fld, value in (
        ("trustedCACerts.value", tc.get("value")),
        ("externalProxy.sslCA", xp.get("sslCA")),
    ):
        pem = pems[fld] = text(value, fld, p)
        if pem is not None:
            if "-----BEGIN CERTIFICATE-----" not in pem:
                p.error(fld, "holds no PEM certificate", "paste the CA as PEM text")
            else:
                ca_pem_parts.append(pem.strip() + "\n")
    ca_configmap: tuple[str, str] | None = None
    names: dict[str, str | None] = {}
    for fld, value in (
        ("trustedCACerts.existingConfigmap", tc.get("existingConfigmap")),
        ("externalProxy.sslCAConfigmap", xp.get("sslCAConfigmap")),
    ):
        cm = mapping(value, fld, p)
        name = names[fld] = text(cm.get("name"), f"{fld}.name", p)
        if name and ca_configmap is None:
            key = text(cm.get("key"), f"{fld}.key", p) or "ca.crt"
            ca_configmap = (name, key)
    if pems["externalProxy.sslCA"] and names["externalProxy.sslCAConfigmap"]:
        p.error(
            "externalProxy.sslCA",
            "is set together with externalProxy.sslCAConfigmap (Duplicated SSL CA)",
            "set either externalProxy.sslCA or externalProxy.sslCAConfigmap, not both",
        )

    proxy = proxy_settings(
        p,
        enabled=enabled,
        http_proxy=url,
        https_proxy=url,
        username=None,
        password_file=None,
        ca_file=None,
        verify=boolean(
            xp.get("sslRejectUnauthorized"), "externalProxy.sslRejectUnauthorized", p, default=True
        ),
        prefix="externalProxy.",
        ca_pem="".join(ca_pem_parts) or None,
        ca_configmap=ca_configmap,
    )
    excluded = text_list(xp.get("excludedDomains"), "externalProxy.excludedDomains", p) or []
    dep = deployment(
        p,
        kind=None,
        cluster_domain=top.get("clusterDomain"),
        service_ip=None,
        gke=None,
        prefix="",
        env=env,
        cluster_domain_field="clusterDomain",
    )
    settings = Settings(
        proxy=proxy, excluded_domains=tuple(excluded), deployment=dep, source=source
    )
    return finish(p, settings, excluded_field="externalProxy.excludedDomains")
