"""The settings model: frozen values every loader builds and every consumer reads.

Nothing here reads input. The loaders (:mod:`~egress.settings.egress_yaml`,
:mod:`~egress.settings.helm`, :mod:`~egress.settings.environment`) validate raw input and build
these; :meth:`Settings.from_proxy` and :meth:`Settings.override` go through the same checks.

>>> ProxyURL("https", "fd00::5", 3129).display("alice")
'https://alice:********@[fd00::5]:3129'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from egress.errors import Problem
from egress.noproxy import split_no_proxy
from egress.redact import REDACTED, Secret
from egress.warehouses import WAREHOUSES

if TYPE_CHECKING:
    from egress.router import Router

DEPLOYMENT_KINDS = ("kubernetes", "single-vm")
PROXY_AUTH_METHODS = ("basic", "negotiate")
"""How egress authenticates to the proxy: Basic, or Kerberos through Negotiate (RFC 4559)."""
PROXY_TYPES = ("http", "https")
"""How egress talks to the proxy: plain HTTP, or TLS to the proxy."""
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
class KerberosSettings:
    """Negotiate (Kerberos) to the proxy: where the identity comes from, and the proxy's SPN.

    With no keytab, the identity is the usual one: the credential cache (``kinit``,
    ``KRB5CCNAME``) or a client keytab named by ``KRB5_CLIENT_KTNAME``.
    """

    keytab: str | None = None
    principal: str | None = None
    spn: str | None = None
    """As written; None: ``HTTP/<proxy host>``."""

    def spn_for(self, proxy: ProxyURL) -> str:
        """The service principal of ``proxy``: the setting, else ``HTTP/<host>``."""
        return self.spn or f"HTTP/{proxy.host}"


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
    auth: Literal["basic", "negotiate"] | None = None
    """How egress authenticates to the proxy; None: not at all."""
    kerberos: KerberosSettings | None = None
    """Set when ``auth`` is ``negotiate``."""

    @property
    def configured(self) -> bool:
        return self.http_proxy is not None or self.https_proxy is not None

    def for_scheme(self, scheme: str) -> ProxyURL | None:
        """The proxy a destination with this URL scheme uses (http/ws: the http one)."""
        return self.http_proxy if scheme in ("http", "ws") else self.https_proxy

    def display(self, proxy: ProxyURL | None) -> str | None:
        return None if proxy is None else proxy.display(self.username)

    def auth_shown(self, proxy: ProxyURL | None) -> str | None:
        """How egress authenticates to ``proxy``, for people (never a secret); None: it does not.

        >>> url = ProxyURL("http", "proxy.corp", 3128)
        >>> ProxySettings(auth="negotiate", kerberos=KerberosSettings()).auth_shown(url)
        'negotiate (Kerberos to HTTP/proxy.corp; identity: the credential cache)'
        """
        if self.auth == "basic":
            return f"basic (user {self.username})"
        if self.auth == "negotiate" and self.kerberos is not None and proxy is not None:
            k = self.kerberos
            who = (
                f"{k.principal} from the keytab {k.keytab}"
                if k.keytab and k.principal
                else "the credential cache"
            )
            return f"negotiate (Kerberos to {k.spn_for(proxy)}; identity: {who})"
        return None


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
    endpoints: tuple[str, ...] = ()
    """The platform's own destinations (warehouse hosts, internal services) as URLs, for
    ``egress check``: ``postgresql://db.corp:5432``, ``https://vault.corp/health``."""
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
        # The loaders build this model, so they are imported when used, not at import time.
        from egress.settings.egress_yaml import load_settings_from_mapping

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
        from egress.settings.fields import Problems
        from egress.settings.finish import finish
        from egress.settings.proxy_url import parse_proxy_url

        p = Problems()
        settings = self
        if proxy_url is not None:
            url = parse_proxy_url(proxy_url, "--proxy", p)
            if url is not None:
                proxy = replace(self.proxy, enabled=True, http_proxy=url, https_proxy=url)
                settings = replace(settings, proxy=proxy)
        if no_proxy is not None:
            settings = replace(settings, excluded_domains=tuple(split_no_proxy(no_proxy)))
        return finish(p, settings, excluded_field="--no-proxy")

    def with_enabled(self, enabled: bool) -> Settings:
        """The same settings with the admin-console switch flipped."""
        return replace(self, proxy=replace(self.proxy, enabled=enabled))


@functools.lru_cache(maxsize=64)
def _router_for(settings: Settings) -> Router:
    from egress.router import Router

    return Router(settings)
