"""Settings: one validated, immutable description of the proxy and what bypasses it.

Three loaders read the same model, and every one of them refuses bad input whole, listing every
problem at once (field, message, hint) in a :class:`~egress.errors.ConfigError`:

- :func:`load_yaml` reads ``egress.yaml``::

    proxy:
      enabled: true                          # the admin-console switch (S6)
      url: http://proxy.corp.example:3128    # http:// or https://, or host / port / type
      https_url: null                        # another proxy for https:// destinations
      username: null                         # Basic auth (S14); the password only from a file
      password_file: null
      ca_file: null                          # PEM that signs the proxy's certificate
      verify: true                           # verify the proxy's certificate
    excluded_domains: [.corp.example]        # list, or one comma-separated string
    deployment: {kind: kubernetes, cluster_domain: cluster.local, service_ip: auto,
                 gke_workload_identity: false}
    warehouses: [bigquery, snowflake, postgres, redshift, databricks]
    tunnel_tcp_warehouses: false
    features: [core]
    resolve: {}                              # host -> IP for direct connections

- :func:`load_helm_values` reads the seed platform's ``customizations.yaml`` (``externalProxy.*``,
  ``trustedCACerts.*``, ``clusterDomain``) as it is.
- :func:`load_environment` reads ``http_proxy``/``HTTP_PROXY``/``https_proxy``/``HTTPS_PROXY``/
  ``all_proxy``/``ALL_PROXY``/``no_proxy``/``NO_PROXY``: lowercase first, set-but-empty means unset,
  no fallback from https to the http proxy, and uppercase ``HTTP_PROXY`` ignored when
  ``REQUEST_METHOD`` is set (CGI, "httpoxy").

>>> s = Settings.from_proxy("https://proxy.corp.example:3129", no_proxy=".corp.example")
>>> str(s.proxy.for_scheme("https")), s.excluded_domains
('https://proxy.corp.example:3129', ('.corp.example',))
>>> load_settings_from_mapping({"proxy": {"url": "socks5://p:1080"}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
egress.errors.ConfigError: proxy.url: "socks5://p:1080" uses scheme socks5; only http:// and ...
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import yaml

from egress.catalog import check_features
from egress.errors import ConfigError, Problem
from egress.noproxy import NoProxyMatcher
from egress.redact import REDACTED, Secret, mask_url, shown
from egress.warehouses import WAREHOUSES

if TYPE_CHECKING:
    from egress.router import Router

DEPLOYMENT_KINDS = ("kubernetes", "single-vm")
DEFAULT_WAREHOUSES = tuple(WAREHOUSES)


@dataclass(frozen=True)
class ProxyURL:
    """Where the customer's proxy listens. Never carries credentials."""

    scheme: Literal["http", "https"]
    host: str
    port: int
    explicit_port: bool = True

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def display(self, username: str | None = None) -> str:
        """The URL as shown to people: a username appears with its password masked."""
        if username:
            return f"{self.scheme}://{username}:{REDACTED}@{self.netloc}"
        return str(self)


@dataclass(frozen=True)
class ProxySettings:
    """The customer's proxy: where it is, how to trust it and authenticate, and the switch (S6)."""

    enabled: bool = False
    http_proxy: ProxyURL | None = None
    """Proxy for ``http://`` and ``ws://`` destinations."""
    https_proxy: ProxyURL | None = None
    """Proxy for ``https://``, ``wss://`` and every CONNECT tunnel."""
    username: str | None = None
    password_file: str | None = None
    password: Secret | None = field(default=None, repr=False)
    ca_file: str | None = None
    ca_pem: str | None = field(default=None, repr=False)
    """Inline PEM (Helm ``trustedCACerts.value`` / ``externalProxy.sslCA``)."""
    ca_configmap: tuple[str, str] | None = None
    """A ConfigMap (name, key) holding the CA, as the seed chart's ``sslCAConfigmap``."""
    verify: bool = True

    @property
    def configured(self) -> bool:
        return self.http_proxy is not None or self.https_proxy is not None

    def for_scheme(self, scheme: str) -> ProxyURL | None:
        """The proxy a destination with this URL scheme uses (http/ws: the http one)."""
        return self.http_proxy if scheme in ("http", "ws") else self.https_proxy

    def display(self, proxy: ProxyURL | None) -> str | None:
        return None if proxy is None else proxy.display(self.username)


@dataclass(frozen=True)
class Deployment:
    """Where the platform runs; decides the automatic exclusions (S4, S5, S7)."""

    kind: Literal["kubernetes", "single-vm"] = "kubernetes"
    cluster_domain: str = "cluster.local"
    service_ip: str | None = None
    """The ClusterIP of ``kubernetes.default`` once known, whatever its source."""
    service_ip_source: str = "unknown"
    """``deployment.service_ip``, ``KUBERNETES_SERVICE_HOST`` or ``unknown``."""
    gke_workload_identity: bool = False


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build them with a loader or :meth:`from_proxy`; they never change."""

    proxy: ProxySettings = ProxySettings()
    excluded_domains: tuple[str, ...] = ()
    deployment: Deployment = Deployment()
    warehouses: tuple[str, ...] = DEFAULT_WAREHOUSES
    tunnel_tcp_warehouses: bool = False
    features: tuple[str, ...] = ("core",)
    resolve: tuple[tuple[str, str], ...] = ()
    """Host -> IP overrides for direct connections, like curl's ``--resolve``."""
    source: str = "defaults"
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    @classmethod
    def from_proxy(
        cls,
        url: str,
        no_proxy: str | Iterable[str] | None = None,
        *,
        https_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Ad-hoc settings with the proxy switched on, like ``HTTPS_PROXY`` + ``NO_PROXY``."""
        raw: dict[str, Any] = {"proxy": {"enabled": True, "url": url, "https_url": https_url}}
        if no_proxy is not None:
            raw["excluded_domains"] = no_proxy if isinstance(no_proxy, str) else list(no_proxy)
        return load_settings_from_mapping(raw, source="--proxy", env=env)

    def router(self) -> Router:
        """The compiled router for these settings (built once, then reused)."""
        return _router_for(self)

    def resolve_map(self) -> dict[str, str]:
        return dict(self.resolve)

    def override(self, *, proxy_url: str | None = None, no_proxy: str | None = None) -> Settings:
        """These settings with the proxy (switched on) and/or the exclusions replaced.

        The result is validated like a loaded file; its warnings are those of the new settings.
        """
        p = _Problems()
        settings = self
        if proxy_url is not None:
            url = parse_proxy_url(proxy_url, "--proxy", p)
            if url is not None:
                proxy = replace(self.proxy, enabled=True, http_proxy=url, https_proxy=url)
                settings = replace(settings, proxy=proxy)
        if no_proxy is not None:
            tokens = tuple(t for t in re.split(r"[,\s]+", no_proxy) if t)
            settings = replace(settings, excluded_domains=tokens)
        return _finish(p, settings, excluded_field="--no-proxy")

    def with_enabled(self, enabled: bool) -> Settings:
        """The same settings with the admin-console switch flipped."""
        return replace(self, proxy=replace(self.proxy, enabled=enabled))


@functools.lru_cache(maxsize=64)
def _router_for(settings: Settings) -> Router:
    from egress.router import Router

    return Router(settings)


# ---------------------------------------------------------------------------------------------
# Field readers: each records a Problem instead of raising, so all problems come out at once.


class _Problems:
    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, fld: str, message: str, hint: str = "") -> None:
        self.errors.append(Problem(fld, message, hint))

    def warn(self, fld: str, message: str, hint: str = "") -> None:
        self.warnings.append(Problem(fld, message, hint))


def _show(value: object) -> str:
    """A short, quoted, masked rendering of a bad value for a message."""
    return shown(value)


def redact_url(text: str) -> str:
    """Mask the password of a URL (kept for callers of the old name; see :mod:`egress.redact`)."""
    return mask_url(text)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _bool(value: object, fld: str, p: _Problems, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    p.error(fld, f"{_show(value)} is not true or false", "write true or false")
    return default


def _str(value: object, fld: str, p: _Problems) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    p.error(fld, f"{_show(value)} is not a string", "write a single text value")
    return None


def _str_list(value: object, fld: str, p: _Problems) -> list[str] | None:
    """A list of strings, or one comma-separated string, or a list whose items hold commas."""
    if value is None:
        return None
    items: list[object] = [value] if isinstance(value, str) else value  # type: ignore[assignment]
    if not isinstance(items, list | tuple):
        p.error(
            fld, f"{_show(value)} is not a list", "write a YAML list or a comma-separated string"
        )
        return None
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            p.error(f"{fld}[{i}]", f"{_show(item)} is not a string", "write each entry as text")
            continue
        out.extend(t for t in re.split(r"[,\s]+", item) if t)
    return out


def _mapping(value: object, fld: str, p: _Problems, example: str = "") -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return value
    hint = f"write key: value pairs, e.g. {example}" if example else "write key: value pairs"
    p.error(fld or "settings", f"{_show(value)} is not a mapping", hint)
    return {}


def _unknown_keys(m: Mapping[str, Any], known: Iterable[str], prefix: str, p: _Problems) -> None:
    known = list(known)
    for key in m:
        if key not in known:
            p.error(
                f"{prefix}{key}",
                "is not a known setting",
                f"known settings here: {', '.join(known)}",
            )


def parse_proxy_url(
    value: object, fld: str, p: _Problems, *, assume_http: bool = False
) -> ProxyURL | None:
    """Parse a proxy URL, refusing every form egress cannot carry out."""
    text = _str(value, fld, p)
    if text is None:
        return None
    if any(ord(c) < 0x21 or c == "\x7f" for c in text):
        p.error(fld, "contains spaces or control characters", "write the URL as http://host:port")
        return None
    if "://" not in text:
        if assume_http:
            text = "http://" + text
        else:
            p.error(
                fld,
                f"{_show(text)} has no scheme; only http:// and https:// proxies are supported",
                f"write http://{text} or https://{text}",
            )
            return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        p.error(fld, f"{_show(text)} has an invalid port", "use a port between 1 and 65535")
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        p.error(
            fld,
            f"{_show(text)} uses scheme {scheme or 'none'}; only http:// and https:// proxies are "
            "supported",
            "write the proxy as http://host:port or https://host:port",
        )
        return None
    if parts.username is not None or parts.password is not None:
        p.error(
            fld,
            f"{_show(text)} has credentials in the URL, where they would leak into logs and "
            "environment variables",
            "remove them from the URL and set proxy.username and proxy.password_file",
        )
        return None
    host = parts.hostname
    if not host:
        p.error(fld, f"{_show(text)} has no host", "write the proxy as http://host:port")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        p.error(fld, f"{_show(text)} has a path or query", "write only scheme://host:port")
        return None
    if port is not None and not 1 <= port <= 65535:
        p.error(fld, f"{_show(text)} has port {port}", "use a port between 1 and 65535")
        return None
    if not _valid_host(host):
        p.error(fld, f"{_show(text)} has an invalid host {host!r}", "write a DNS name or an IP")
        return None
    default = 443 if scheme == "https" else 80
    return ProxyURL(scheme, host, port or default, explicit_port=port is not None)  # type: ignore[arg-type]


_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_host) <= 253 and all(_LABEL.match(lbl) for lbl in ascii_host.split("."))


def valid_dns_name(name: str) -> bool:
    """A DNS name made of letters, digits and hyphens (the cluster domain)."""
    return len(name) <= 253 and all(
        re.match(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", lbl) for lbl in name.split(".")
    )


def _read_secret_file(path: str, fld: str, p: _Problems) -> Secret | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        p.error(fld, f"{_show(path)} cannot be read ({reason})", "point it at a readable file")
        return None
    secret = text.rstrip("\r\n")
    if not secret:
        p.error(fld, f"{_show(path)} is empty", "write the proxy password into that file")
        return None
    if "\n" in secret or "\r" in secret:
        p.error(fld, f"{_show(path)} holds more than one line", "keep only the password in it")
        return None
    return Secret(secret)


def _check_ca_file(path: str, fld: str, p: _Problems) -> None:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        p.error(fld, f"{_show(path)} cannot be read ({exc.strerror})", "point it at a PEM file")
        return
    if "-----BEGIN CERTIFICATE-----" not in text:
        p.error(fld, f"{_show(path)} holds no PEM certificate", "give the CA as a PEM file")


# ---------------------------------------------------------------------------------------------
# The egress.yaml model.

_TOP_KEYS = (
    "proxy",
    "excluded_domains",
    "deployment",
    "warehouses",
    "tunnel_tcp_warehouses",
    "features",
    "resolve",
)
_PROXY_KEYS = (
    "enabled",
    "url",
    "https_url",
    "host",
    "port",
    "type",
    "username",
    "password_file",
    "ca_file",
    "verify",
)
_DEPLOYMENT_KEYS = ("kind", "cluster_domain", "service_ip", "gke_workload_identity")


def _proxy_from_parts(m: Mapping[str, Any], prefix: str, p: _Problems) -> ProxyURL | None:
    """The ``host`` / ``port`` / ``type`` spelling of a proxy."""
    host = _str(m.get("host"), f"{prefix}host", p)
    if host is None:
        if m.get("port") not in (None, "") or m.get("type") not in (None, ""):
            p.error(f"{prefix}host", "is missing while port or type is set", "set the proxy host")
        return None
    kind = (_str(m.get("type"), f"{prefix}type", p) or "http").lower()
    if kind not in ("http", "https"):
        p.error(f"{prefix}type", f"{_show(kind)} is not http or https", "set type: http or https")
        return None
    port = _port(m.get("port"), f"{prefix}port", p)
    if "://" in host:
        p.error(f"{prefix}host", f"{_show(host)} holds a scheme", "put only the name in host")
        return None
    if ":" in host and not _is_ipv6(host.strip("[]")):
        p.error(
            f"{prefix}host",
            f"{_show(host)} holds a port",
            f"put only the name in {prefix}host and the port in {prefix}port",
        )
        return None
    host = host.strip("[]")
    netloc = f"[{host}]" if ":" in host else host
    url = f"{kind}://{netloc}" + (f":{port}" if port else "")
    return parse_proxy_url(url, f"{prefix}host", p)


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _port(value: object, fld: str, p: _Problems) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).strip() if not isinstance(value, bool) else ""
    if text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    p.error(fld, f"{_show(value)} is not a port", "use a number between 1 and 65535")
    return None


def _service_ip(
    value: object, fld: str, kind: str, env: Mapping[str, str], p: _Problems
) -> tuple[str | None, str]:
    text = _str(value, fld, p)
    if text is None or text.lower() == "auto":
        host = env.get("KUBERNETES_SERVICE_HOST", "").strip()
        if host:
            try:
                return str(ipaddress.ip_address(host)), "KUBERNETES_SERVICE_HOST"
            except ValueError:
                p.warn("KUBERNETES_SERVICE_HOST", f"{_show(host)} is not an IP and was not used")
        return None, "unknown"
    try:
        return str(ipaddress.ip_address(text.strip("[]"))), fld
    except ValueError:
        p.error(
            fld,
            f"{_show(text)} is not an IP address",
            "write the ClusterIP that `egress cluster-ip` prints, or auto",
        )
        return None, "unknown"


def _build(raw: object, source: str, env: Mapping[str, str]) -> Settings:
    p = _Problems()
    top = _mapping(raw, "", p)
    _unknown_keys(top, _TOP_KEYS, "", p)

    pm = _mapping(top.get("proxy"), "proxy", p, example="proxy: {url: http://proxy:3128}")
    _unknown_keys(pm, _PROXY_KEYS, "proxy.", p)
    if pm.get("url") not in (None, "") and pm.get("host") not in (None, ""):
        p.error("proxy.url", "is set together with proxy.host", "use either url or host/port/type")
    url = parse_proxy_url(pm.get("url"), "proxy.url", p) or _proxy_from_parts(pm, "proxy.", p)
    https_url = parse_proxy_url(pm.get("https_url"), "proxy.https_url", p)
    proxy = _proxy_settings(
        p,
        enabled=_bool(
            pm.get("enabled"), "proxy.enabled", p, default=url is not None or https_url is not None
        ),
        http_proxy=url,
        https_proxy=https_url or url,
        username=_str(pm.get("username"), "proxy.username", p),
        password_file=_str(pm.get("password_file"), "proxy.password_file", p),
        ca_file=_str(pm.get("ca_file"), "proxy.ca_file", p),
        verify=_bool(pm.get("verify"), "proxy.verify", p, default=True),
        prefix="proxy.",
    )

    dm = _mapping(top.get("deployment"), "deployment", p)
    _unknown_keys(dm, _DEPLOYMENT_KEYS, "deployment.", p)
    deployment = _deployment(
        p,
        kind=dm.get("kind"),
        cluster_domain=dm.get("cluster_domain"),
        service_ip=dm.get("service_ip"),
        gke=dm.get("gke_workload_identity"),
        prefix="deployment.",
        env=env,
    )

    excluded = _str_list(top.get("excluded_domains"), "excluded_domains", p) or []
    warehouses = _warehouses(top.get("warehouses"), "warehouses", p)
    features = _str_list(top.get("features"), "features", p)
    p.errors.extend(check_features(features or ()))
    resolve = _resolve(top.get("resolve"), p)
    return _finish(
        p,
        Settings(
            proxy=proxy,
            excluded_domains=tuple(excluded),
            deployment=deployment,
            warehouses=warehouses,
            tunnel_tcp_warehouses=_bool(
                top.get("tunnel_tcp_warehouses"), "tunnel_tcp_warehouses", p, default=False
            ),
            features=tuple(features) if features is not None else ("core",),
            resolve=resolve,
            source=source,
        ),
        excluded_field="excluded_domains",
    )


def _proxy_settings(
    p: _Problems,
    *,
    enabled: bool,
    http_proxy: ProxyURL | None,
    https_proxy: ProxyURL | None,
    username: str | None,
    password_file: str | None,
    ca_file: str | None,
    verify: bool,
    prefix: str,
    ca_pem: str | None = None,
    ca_configmap: tuple[str, str] | None = None,
) -> ProxySettings:
    password: Secret | None = None
    if username is not None and (":" in username or any(ord(c) < 0x20 for c in username)):
        p.error(f"{prefix}username", "contains ':' or control characters", "give only the name")
    if password_file is not None:
        password = _read_secret_file(password_file, f"{prefix}password_file", p)
        if username is None:
            p.error(
                f"{prefix}username",
                "is missing while password_file is set",
                "set the proxy user name",
            )
    elif username is not None:
        p.error(
            f"{prefix}password_file",
            "is missing while username is set",
            "point password_file at a file that holds the proxy password",
        )
    if ca_file is not None:
        _check_ca_file(ca_file, f"{prefix}ca_file", p)
    address_refused = any(e.field.startswith(prefix) for e in p.errors)
    if enabled and http_proxy is None and https_proxy is None and not address_refused:
        p.error(
            f"{prefix}url",
            "is missing while the proxy is enabled",
            "set the proxy URL, e.g. http://proxy.corp.example:3128, or switch the proxy off",
        )
    return ProxySettings(
        enabled=enabled,
        http_proxy=http_proxy,
        https_proxy=https_proxy,
        username=username,
        password_file=password_file,
        password=password,
        ca_file=ca_file,
        ca_pem=ca_pem,
        ca_configmap=ca_configmap,
        verify=verify,
    )


def _deployment(
    p: _Problems,
    *,
    kind: object,
    cluster_domain: object,
    service_ip: object,
    gke: object,
    prefix: str,
    env: Mapping[str, str],
    kind_field: str = "kind",
    cluster_domain_field: str = "cluster_domain",
) -> Deployment:
    kind_text = (_str(kind, f"{prefix}{kind_field}", p) or "kubernetes").lower()
    if kind_text not in DEPLOYMENT_KINDS:
        p.error(
            f"{prefix}{kind_field}",
            f"{_show(kind_text)} is not a known deployment kind",
            f"use one of: {', '.join(DEPLOYMENT_KINDS)}",
        )
        kind_text = "kubernetes"
    domain = (_str(cluster_domain, f"{prefix}{cluster_domain_field}", p) or "cluster.local").lower()
    domain = domain.strip(".")
    if not valid_dns_name(domain):
        p.error(
            f"{prefix}{cluster_domain_field}",
            f"{_show(domain)} is not a valid DNS domain",
            "use the cluster's DNS domain, usually cluster.local",
        )
        domain = "cluster.local"
    ip, ip_source = _service_ip(service_ip, f"{prefix}service_ip", kind_text, env, p)
    return Deployment(
        kind=kind_text,  # type: ignore[arg-type]
        cluster_domain=domain,
        service_ip=ip,
        service_ip_source=ip_source,
        gke_workload_identity=_bool(gke, f"{prefix}gke_workload_identity", p, default=False),
    )


def _warehouses(value: object, fld: str, p: _Problems) -> tuple[str, ...]:
    names = _str_list(value, fld, p)
    if names is None:
        return DEFAULT_WAREHOUSES
    out: list[str] = []
    for name in names:
        key = name.lower()
        if key not in WAREHOUSES:
            p.error(
                fld,
                f"{_show(name)} is not a known warehouse",
                f"use any of: {', '.join(WAREHOUSES)}",
            )
        elif key not in out:
            out.append(key)
    return tuple(out)


def _resolve(value: object, p: _Problems) -> tuple[tuple[str, str], ...]:
    m = _mapping(value, "resolve", p)
    out: list[tuple[str, str]] = []
    for host, ip in m.items():
        text = _str(ip, f"resolve.{host}", p)
        try:
            out.append((host.lower().rstrip("."), str(ipaddress.ip_address(text or ""))))
        except ValueError:
            p.error(f"resolve.{host}", f"{_show(ip)} is not an IP address", "map a host to an IP")
    return tuple(out)


def _finish(p: _Problems, settings: Settings, *, excluded_field: str) -> Settings:
    """Add the warnings derived from complete settings, then refuse or accept them whole."""
    matcher = NoProxyMatcher.parse(settings.excluded_domains)
    for ignored in matcher.ignored:
        p.warn(excluded_field, f"{_show(ignored.token)} is ignored: {ignored.reason}")
    proxy, dep = settings.proxy, settings.deployment
    if proxy.configured and not proxy.verify:
        p.warn(
            "proxy.verify",
            "is false: the proxy's certificate is not checked, so anyone on the path can pose "
            "as the proxy",
            "set proxy.ca_file to the CA that signs the proxy's certificate instead",
        )
    if dep.kind == "kubernetes" and dep.service_ip is None:
        p.warn(
            "deployment.service_ip",
            "the ClusterIP of the kubernetes Service is unknown, so it is not excluded from the "
            "proxy",
            "run `egress cluster-ip` and set deployment.service_ip to the address it prints",
        )
    https_proxy = proxy.https_proxy
    if "snowflake" in settings.warehouses and https_proxy and https_proxy.scheme == "https":
        p.warn(
            "warehouses",
            "Snowflake cannot connect through an https:// proxy, so egress routes "
            "*.snowflakecomputing.com direct and adds .snowflakecomputing.com to every rendered "
            "NO_PROXY",
            "allow that traffic in your network policy (egress render networkpolicy)",
        )
    if p.errors:
        raise ConfigError(p.errors, p.warnings)
    return replace(settings, warnings=tuple(p.warnings))


# ---------------------------------------------------------------------------------------------
# Loaders.


def _read_yaml(path: str | os.PathLike[str], what: str) -> object:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(
            [Problem(what, f"{_show(str(path))} cannot be read ({reason})", "check the path")]
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [Problem(what, f"{_show(str(path))} is not valid YAML{where}", "fix the YAML syntax")]
        ) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(
            [Problem(what, f"{_show(str(path))} cannot be parsed as YAML", "fix the YAML syntax")]
        ) from exc


def load_settings_from_mapping(
    raw: object, *, source: str = "mapping", env: Mapping[str, str] | None = None
) -> Settings:
    """Validate an ``egress.yaml``-shaped structure (already parsed)."""
    return _build(raw, source, os.environ if env is None else env)


def load_yaml(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate ``egress.yaml``."""
    raw = _read_yaml(path, "config")
    return load_settings_from_mapping({} if raw is None else raw, source=str(path), env=env)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    helm_values: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from ``egress.yaml``, from seed-style Helm values, or else from the environment."""
    if path is not None and helm_values is not None:
        raise ConfigError(
            [
                Problem(
                    "config",
                    "both a config file and Helm values were given",
                    "give only one of them",
                )
            ]
        )
    if path is not None:
        return load_yaml(path, env=env)
    if helm_values is not None:
        return load_helm_values(helm_values, env=env)
    return load_environment(os.environ if env is None else env)


# --- seed Helm values --------------------------------------------------------------------------

_HELM_PROXY_KEYS = (
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
    """Load the seed chart's ``customizations.yaml`` (``externalProxy``, ``trustedCACerts``)."""
    raw = _read_yaml(path, "helm-values")
    return settings_from_helm_mapping({} if raw is None else raw, source=str(path), env=env)


def settings_from_helm_mapping(
    raw: object, *, source: str = "helm-values", env: Mapping[str, str] | None = None
) -> Settings:
    """Validate a parsed seed Helm values structure."""
    env = os.environ if env is None else env
    p = _Problems()
    top = _mapping(raw, "", p)
    xp = _mapping(top.get("externalProxy"), "externalProxy", p)
    for key in xp:
        if key not in _HELM_PROXY_KEYS:
            p.warn(f"externalProxy.{key}", "is not a key of the seed chart and was ignored")
    enabled = _bool(xp.get("enabled"), "externalProxy.enabled", p, default=False)

    url: ProxyURL | None = None
    if xp.get("connectionString") not in (None, ""):
        url = parse_proxy_url(xp.get("connectionString"), "externalProxy.connectionString", p)
    else:
        url = _proxy_from_parts(xp, "externalProxy.", p)
        if enabled and url is None and not p.errors:
            p.error(
                "externalProxy.host",
                "is empty while externalProxy.enabled is true",
                "set externalProxy.host, port and type, or externalProxy.connectionString",
            )

    ca_pem_parts: list[str] = []
    tc = _mapping(top.get("trustedCACerts"), "trustedCACerts", p)
    for fld, value in (
        ("trustedCACerts.value", tc.get("value")),
        ("externalProxy.sslCA", xp.get("sslCA")),
    ):
        pem = _str(value, fld, p)
        if pem is not None:
            if "-----BEGIN CERTIFICATE-----" not in pem:
                p.error(fld, "holds no PEM certificate", "paste the CA as PEM text")
            else:
                ca_pem_parts.append(pem.strip() + "\n")
    ca_configmap: tuple[str, str] | None = None
    for fld, value in (
        ("trustedCACerts.existingConfigmap", tc.get("existingConfigmap")),
        ("externalProxy.sslCAConfigmap", xp.get("sslCAConfigmap")),
    ):
        cm = _mapping(value, fld, p)
        name = _str(cm.get("name"), f"{fld}.name", p)
        if name and ca_configmap is None:
            key = _str(cm.get("key"), f"{fld}.key", p) or "ca.crt"
            ca_configmap = (name, key)
    sslca = _str(xp.get("sslCA"), "externalProxy.sslCA", p)
    sslcm = _mapping(xp.get("sslCAConfigmap"), "externalProxy.sslCAConfigmap", p)
    if sslca and _str(sslcm.get("name"), "externalProxy.sslCAConfigmap.name", _Problems()):
        p.error(
            "externalProxy.sslCA",
            "is set together with externalProxy.sslCAConfigmap (Duplicated SSL CA)",
            "set either externalProxy.sslCA or externalProxy.sslCAConfigmap, not both",
        )

    proxy = _proxy_settings(
        p,
        enabled=enabled,
        http_proxy=url,
        https_proxy=url,
        username=None,
        password_file=None,
        ca_file=None,
        verify=_bool(
            xp.get("sslRejectUnauthorized"), "externalProxy.sslRejectUnauthorized", p, default=True
        ),
        prefix="externalProxy.",
        ca_pem="".join(ca_pem_parts) or None,
        ca_configmap=ca_configmap,
    )
    excluded = _str_list(xp.get("excludedDomains"), "externalProxy.excludedDomains", p) or []
    deployment = _deployment(
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
        proxy=proxy,
        excluded_domains=tuple(excluded),
        deployment=deployment,
        source=source,
    )
    return _finish(p, settings, excluded_field="externalProxy.excludedDomains")


# --- the environment ---------------------------------------------------------------------------


def _env_first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None


def load_environment(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the proxy variables, read as ``reference/no-proxy-semantics.md`` §6.1 says.

    >>> s = load_environment({"https_proxy": "proxy:3128", "NO_PROXY": ".corp", "KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    >>> s.proxy.https_proxy, s.proxy.http_proxy, s.excluded_domains
    (ProxyURL(scheme='http', host='proxy', port=3128, explicit_port=True), None, ('.corp',))
    """  # noqa: E501
    env = os.environ if env is None else env
    p = _Problems()
    http_names = ["http_proxy"] + ([] if env.get("REQUEST_METHOD") else ["HTTP_PROXY"])
    found: dict[str, ProxyURL | None] = {}
    for scheme, names in (("http", http_names), ("https", ["https_proxy", "HTTPS_PROXY"])):
        hit = _env_first(env, *names, "all_proxy", "ALL_PROXY")
        found[scheme] = parse_proxy_url(hit[1], hit[0], p, assume_http=True) if hit else None
    no_proxy = _env_first(env, "no_proxy", "NO_PROXY")
    settings = Settings(
        proxy=ProxySettings(
            enabled=bool(found["http"] or found["https"]),
            http_proxy=found["http"],
            https_proxy=found["https"],
        ),
        excluded_domains=tuple(t for t in re.split(r"[,\s]+", no_proxy[1]) if t)
        if no_proxy
        else (),
        deployment=_deployment(
            p,
            kind=None,
            cluster_domain=None,
            service_ip=None,
            gke=None,
            prefix="deployment.",
            env=env,
        ),
        source="environment",
    )
    return _finish(p, settings, excluded_field=no_proxy[0] if no_proxy else "NO_PROXY")
