"""The ``egress.yaml`` loader (and the same shape as a Python mapping).

Its keys and each key's reader come from :data:`egress.settings.declaration.FIELDS`; the rules
that tie fields together are in :mod:`~egress.settings.sections`.

::

    proxy:
      enabled: true                          # the admin-console switch (S6)
      url: http://proxy.corp.example:3128    # http:// or https://, or host / port / type
      https_url: null                        # another proxy for https:// destinations
      username: null                         # Basic auth (S14); the password only from a file
      password_file: null
      ca_file: null                          # PEM that signs the proxy's certificate
      ca_pem: null                           # or that PEM itself, inline (not with ca_file)
      verify: true                           # verify the proxy's certificate
      auth: null                             # basic (default with a username) | negotiate
      kerberos: {keytab: null, principal: null, spn: null}   # negotiate only
    excluded_domains: [.corp.example]        # list, or one comma-separated string
    deployment: {kind: kubernetes, cluster_domain: cluster.local, service_ip: auto,
                 gke_workload_identity: false}
    warehouses: [bigquery, snowflake, postgres, redshift, databricks]
    tunnel_tcp_warehouses: false
    features: [core]
    resolve: {}                              # host -> IP for direct connections
    endpoints: []                            # own warehouses / services to check (URLs)

>>> s = load_settings_from_mapping({"proxy": {"url": "http://p:3128"}, "resolve":
...     {"db.corp.example": "10.0.0.5"}}, env={})
>>> s.resolve
(('db.corp.example', '10.0.0.5'),)
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from egress.catalog import check_features
from egress.redact import Secret, shown
from egress.settings.declaration import Field, field, yaml_keys
from egress.settings.fields import (
    Problems,
    boolean,
    has_space_or_control,
    key_field,
    mapping,
    port,
    text,
    text_list,
    unknown_keys,
    valid_host,
)
from egress.settings.files import read_ca_pem
from egress.settings.finish import finish
from egress.settings.model import DEFAULT_WAREHOUSES, Settings
from egress.settings.proxy_url import parse_proxy_url, proxy_from_parts
from egress.settings.sections import deployment, proxy_settings
from egress.settings.yaml_file import load_yaml_file
from egress.warehouses import WAREHOUSES

TOP_KEYS: Final = yaml_keys()
PROXY_KEYS: Final = yaml_keys("proxy")
KERBEROS_KEYS: Final = yaml_keys("proxy.kerberos")
DEPLOYMENT_KEYS: Final = yaml_keys("deployment")


def _map_example(f: Field) -> str:
    """``resolve: {db.corp.example: 10.0.0.5}`` from the field's form example."""
    return f"{f.key}: {{{f.example.replace('=', ': ')}}}" if f.example else ""


Reader = Callable[[object, Field, Problems], Any]
READERS: Final[dict[str, Reader]] = {
    "bool": lambda v, f, p: boolean(v, f.path, p, default=bool(f.default)),
    "text": lambda v, f, p: text(v, f.path, p),
    "choice": lambda v, f, p: text(v, f.path, p),
    "url": lambda v, f, p: parse_proxy_url(v, f.path, p),
    "port": lambda v, f, p: port(v, f.path, p),
    "list": lambda v, f, p: text_list(v, f.path, p),
    "map": lambda v, f, p: mapping(v, f.path, p, example=_map_example(f)),
    "pem": lambda v, f, p: read_ca_pem(v, f.path, p),
}
"""Each kind of field's reader: every field of ``egress.yaml`` is read by its declared kind's."""


def _read(section: Mapping[str, Any], path: str, p: Problems) -> Any:
    """The value of the field at ``path`` from its section, read by its kind's reader."""
    f = field(path)
    return READERS[f.kind](section.get(f.key), f, p)


def load_yaml(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate ``egress.yaml`` (a regular file of at most 1 MiB)."""
    raw = load_yaml_file(path, "config")
    return load_settings_from_mapping({} if raw is None else raw, source=str(path), env=env)


def load_settings_from_mapping(
    raw: object,
    *,
    source: str = "mapping",
    env: Mapping[str, str] | None = None,
    password: Secret | None = None,
) -> Settings:
    """Validate an ``egress.yaml``-shaped structure (already parsed).

    ``password`` is the proxy password given directly (the console keeps it apart from the
    document), used instead of ``proxy.password_file``.
    """
    env = os.environ if env is None else env
    p = Problems()
    top = mapping(raw, "", p)
    unknown_keys(top, TOP_KEYS, "", p)

    pm = mapping(top.get("proxy"), "proxy", p, example="proxy: {url: http://proxy:3128}")
    unknown_keys(pm, PROXY_KEYS, "proxy.", p)
    if pm.get("url") not in (None, "") and pm.get("host") not in (None, ""):
        p.error("proxy.url", "is set together with proxy.host", "use either url or host/port/type")
    url = _read(pm, "proxy.url", p) or proxy_from_parts(pm, "proxy.", p)
    https_url = _read(pm, "proxy.https_url", p)
    km = mapping(pm.get("kerberos"), "proxy.kerberos", p, example="kerberos: {spn: HTTP/proxy}")
    unknown_keys(km, KERBEROS_KEYS, "proxy.kerberos.", p)
    kerberos = {k: _read(km, f"proxy.kerberos.{k}", p) for k in KERBEROS_KEYS}
    enabled = boolean(
        pm.get("enabled"), "proxy.enabled", p, default=url is not None or https_url is not None
    )  # a bool as READERS reads it, with a default that depends on the address
    proxy = proxy_settings(
        p,
        enabled=enabled,
        http_proxy=url,
        https_proxy=https_url or url,
        username=_read(pm, "proxy.username", p),
        password_file=_read(pm, "proxy.password_file", p),
        ca_file=_read(pm, "proxy.ca_file", p),
        verify=_read(pm, "proxy.verify", p),
        prefix="proxy.",
        ca_pem=_read(pm, "proxy.ca_pem", p),
        password=password,
        auth=_read(pm, "proxy.auth", p),
        kerberos=kerberos,
    )

    dm = mapping(top.get("deployment"), "deployment", p)
    unknown_keys(dm, DEPLOYMENT_KEYS, "deployment.", p)
    dep = deployment(  # shared with the Helm loader, which reads the same kinds of values
        p,
        kind=dm.get("kind"),
        cluster_domain=dm.get("cluster_domain"),
        service_ip=dm.get("service_ip"),
        gke=dm.get("gke_workload_identity"),
        prefix="deployment.",
        env=env,
    )

    excluded = _read(top, "excluded_domains", p) or []
    warehouses = _warehouses(_read(top, "warehouses", p), "warehouses", p)
    features = _read(top, "features", p)
    p.errors.extend(check_features(features or ()))
    resolve = _resolve(_read(top, "resolve", p), p)
    endpoints = _endpoints(_read(top, "endpoints", p), p)
    return finish(
        p,
        Settings(
            proxy=proxy,
            excluded_domains=tuple(excluded),
            deployment=dep,
            warehouses=warehouses,
            tunnel_tcp_warehouses=_read(top, "tunnel_tcp_warehouses", p),
            features=tuple(features) if features is not None else ("core",),
            resolve=resolve,
            endpoints=endpoints,
            source=source,
        ),
        excluded_field="excluded_domains",
    )


def _endpoints(urls: list[str] | None, p: Problems) -> tuple[str, ...]:
    """``endpoints``: URLs the router can decide (a scheme and a host; no spaces)."""
    from egress.errors import URLError
    from egress.router import parse_target

    out: list[str] = []
    for i, url in enumerate(urls or ()):
        fld = f"endpoints[{i}]"
        if "://" not in url or has_space_or_control(url):
            p.error(
                fld,
                f"{shown(url)} is not a URL with a scheme",
                "write e.g. postgresql://db.corp.example:5432 or https://vault.corp.example/health",
            )
            continue
        try:
            parse_target(url)
        except URLError as exc:
            p.error(fld, str(exc), "write a URL with a host, e.g. https://vault.corp.example/")
            continue
        out.append(url)
    return tuple(out)


def _warehouses(names: list[str] | None, fld: str, p: Problems) -> tuple[str, ...]:
    """``warehouses``: the declared closed set, each name once, lower case."""
    if names is None:
        return DEFAULT_WAREHOUSES
    out: list[str] = []
    for name in names:
        key = name.lower()
        if key not in field("warehouses").choices:
            p.error(
                fld,
                f"{shown(name)} is not a known warehouse",
                f"use any of: {', '.join(WAREHOUSES)}",
            )
        elif key not in out:
            out.append(key)
    return tuple(out)


def _resolve(m: Mapping[str, Any], p: Problems) -> tuple[tuple[str, str], ...]:
    """``resolve``: host -> IP. Both sides are refused whole if they hold a space or control
    character (a host here reaches connection code, where CR/LF must never go)."""
    out: list[tuple[str, str]] = []
    for host, ip in m.items():
        fld = key_field("resolve.", host)
        name = host.lower().rstrip(".")
        if has_space_or_control(host):
            p.error(
                fld,
                "the host name contains spaces or control characters",
                "write the host name alone, e.g. db.corp.example",
            )
            continue
        if not valid_host(name):
            p.error(fld, f"{shown(host)} is not a valid host name", "write a DNS name or an IP")
            continue
        if isinstance(ip, str) and has_space_or_control(ip):
            p.error(
                fld,
                f"{shown(ip)} contains spaces or control characters",
                "write the IP address alone, e.g. 10.0.0.5",
            )
            continue
        try:
            if not isinstance(ip, str):
                raise ValueError("an IP address is written as text")
            out.append((name, str(ipaddress.ip_address(ip))))
        except ValueError:
            p.error(fld, f"{shown(ip)} is not an IP address", "map a host to an IP")
    return tuple(out)
