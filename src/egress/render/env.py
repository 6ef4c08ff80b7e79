"""The proxy environment for every component that is not Python, and for a single VM (S16).

Three formats of the same variables (``RenderOptions.format``):

- ``dotenv`` (default): ``KEY=value`` lines for docker compose ``env_file:`` or systemd
  ``EnvironmentFile=``. Never carries the proxy password.
- ``configmap``: a Kubernetes ConfigMap (``data``). Never carries the proxy password.
- ``secret``: a Kubernetes Secret (``stringData``): the same variables, with the proxy URLs
  carrying ``user:password@`` (percent-encoded) when ``proxy.username`` is set. The only
  output that ever holds the password (README, "Environment for other runtimes").

With authentication configured, dotenv and ConfigMap still write the proxy URLs, without
credentials (the proxy answers 407 until the Secret, mounted after the ConfigMap, overrides
them), and say so in a comment and a warning.

NO_PROXY is the list of :mod:`egress.render.bypass`, built from the router's own rules, so a
runtime that reads only the environment routes each host as ``egress explain`` does; what still
differs between runtimes comes back as warnings that name them.

>>> from egress.settings import Settings
>>> art = render(Settings.from_proxy("http://proxy:3128", ".corp.example", env={}), RenderOptions())
>>> [line for line in art.text.splitlines() if line.startswith("NO_PROXY=")][0][:51]
'NO_PROXY=localhost,.localhost,127.0.0.1,127.0.0.0/8'
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

from egress.render import (
    NO_PROXY_NAMES,
    Artifact,
    RenderOptions,
    check_env_artifact,
    negotiate_warning,
)
from egress.render.bypass import NoProxyGroup, NoProxyList, no_proxy_list
from egress.settings import ProxyURL, Settings

__all__ = [
    "CA_BUNDLE_PATH",
    "CUSTOM_CA_PATH",
    "FORMATS",
    "EnvFile",
    "NoProxyGroup",
    "NoProxyList",
    "environment",
    "no_proxy_list",
    "proxy_url_with",
    "render",
]

FORMATS = ("dotenv", "configmap", "secret")

CUSTOM_CA_PATH = "/etc/egress/ca/custom-ca.pem"
"""Where the custom CA (proxy.ca_file, Helm trustedCACerts) is mounted in each container."""
CA_BUNDLE_PATH = "/etc/egress/ca/ca-bundle.pem"
"""Where the combined bundle (system roots + the custom CA) is mounted in each container."""

SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"
"""The system roots on Debian, Ubuntu and Alpine (RHEL: /etc/pki/tls/certs/ca-bundle.crt)."""

MANAGED_BY = {"app.kubernetes.io/managed-by": "egress"}


# ---------------------------------------------------------------------------------------------
# The variables


@dataclass(frozen=True)
class Variable:
    """One environment variable; ``secret_value`` never shows in ``repr``."""

    name: str
    value: str
    secret_value: str | None = field(default=None, repr=False)
    """The value with credentials, for the Secret only; None when it is the same."""
    url: ProxyURL | None = None
    """The proxy this variable names (HTTP(S)_PROXY, GRPC_PROXY), for a consumer that adds
    credentials its own way (the admission webhook: a reference to a Secret)."""


@dataclass(frozen=True)
class Section:
    """Variables that belong together, with the comment that explains them."""

    title: str
    comment: tuple[str, ...]
    variables: tuple[Variable, ...] = ()


@dataclass(frozen=True)
class EnvFile:
    """Everything a format needs: header comment, sections, warnings."""

    header: tuple[str, ...]
    sections: tuple[Section, ...]
    warnings: tuple[str, ...]
    has_credentials: bool


def _with_credentials(url: ProxyURL, username: str, password: str) -> str:
    return proxy_url_with(url, username, quote(password, safe=""))


def proxy_url_with(url: ProxyURL, username: str, password_text: str) -> str:
    """``url`` with ``username`` (percent-encoded) and ``password_text`` as given, which the
    caller has encoded or which is a reference such as Kubernetes' ``$(EGRESS_PROXY_PASSWORD)``.

    >>> from egress.settings import ProxyURL
    >>> proxy_url_with(ProxyURL("http", "proxy", 3128), "svc@corp", "$(PW)")
    'http://svc%40corp:$(PW)@proxy:3128'
    """
    return f"{url.scheme}://{quote(username, safe='')}:{password_text}@{url.netloc}"


def _ca_configured(settings: Settings) -> bool:
    proxy = settings.proxy
    return bool(proxy.ca_file or proxy.ca_pem or proxy.ca_configmap)


def _ca_source(settings: Settings) -> str:
    proxy = settings.proxy
    if proxy.ca_file:
        return f"proxy.ca_file ({proxy.ca_file})"
    if proxy.ca_configmap:
        name, key = proxy.ca_configmap
        return f"the ConfigMap {name}, key {key}"
    return "the inline CA (proxy.ca_pem, or Helm trustedCACerts.value / externalProxy.sslCA)"


def environment(
    settings: Settings,
    *,
    custom_ca_path: str = CUSTOM_CA_PATH,
    ca_bundle_path: str = CA_BUNDLE_PATH,
) -> EnvFile:
    """The variables, their comments and the warnings, before any format is applied."""
    proxy = settings.proxy
    warnings: list[str] = []
    sections: list[Section] = []
    header = [
        "egress render env: the proxy environment for components that are not Python, and for",
        "a single VM (docker compose env_file:, systemd EnvironmentFile=).",
        f"Rendered from {settings.source}; re-render instead of editing, so it keeps agreeing",
        "with `egress explain`.",
    ]
    active = proxy.enabled and proxy.configured
    has_credentials = bool(active and proxy.username and proxy.password is not None)

    if not active:
        why = (
            "the proxy is switched off in the admin console (proxy.enabled: false)"
            if proxy.configured
            else "no proxy is configured"
        )
        sections.append(
            Section(
                "Proxy",
                (
                    f"No proxy variables: {why}, so every connection goes direct",
                    "(rule proxy-disabled). Re-render and restart the components after",
                    "switching the proxy on.",
                ),
            )
        )
        warnings.append(f"the env file sets no proxy variables: {why}")
    else:
        sections.extend(_proxy_sections(settings, warnings, has_credentials))
        negotiate = negotiate_warning(settings)
        if negotiate is not None:
            warnings.append(negotiate)

    if _ca_configured(settings):
        sections.append(_ca_section(settings, custom_ca_path, ca_bundle_path))
    if proxy.configured and not proxy.verify:
        warnings.append(
            "proxy.verify is false, but no environment variable switches off verification of "
            "the proxy alone; egress never sets NODE_TLS_REJECT_UNAUTHORIZED=0, which would stop "
            "Node from verifying every TLS connection (set proxy.ca_file to the proxy's CA)"
        )
    return EnvFile(tuple(header), tuple(sections), tuple(warnings), has_credentials)


def _proxy_sections(
    settings: Settings, warnings: list[str], has_credentials: bool
) -> list[Section]:
    proxy = settings.proxy
    http, https = proxy.http_proxy, proxy.https_proxy
    username = proxy.username or ""
    password = proxy.password.reveal() if proxy.password is not None else ""

    def var(name: str, url: ProxyURL) -> Variable:
        secret = _with_credentials(url, username, password) if has_credentials else None
        return Variable(name, str(url), secret, url)

    proxy_vars: list[Variable] = []
    if http is not None:
        proxy_vars += [var("HTTP_PROXY", http), var("http_proxy", http)]
    if https is not None:
        proxy_vars += [var("HTTPS_PROXY", https), var("https_proxy", https)]
    comment = [
        "Both spellings: curl and wget read only lowercase http_proxy, Go reads UPPERCASE",
        "first, the rest lowercase first; with equal values they all agree.",
    ]
    if http is None or https is None:
        missing = "https" if https is None else "http"
        comment.append(f"No proxy is configured for {missing}:// destinations: they go direct.")
        if https is None:
            warnings.append(
                "no proxy is configured for https:// destinations, so HTTPS_PROXY is not set; "
                "Node undici then sends https:// requests to HTTP_PROXY, unlike every other "
                "runtime and egress itself"
            )
    if has_credentials:
        comment += [
            "The proxy wants a password (proxy.username): these URLs carry no credentials, so",
            "the proxy answers 407 until the credentialed values override them. Kubernetes:",
            "mount `egress render env --format secret` with envFrom AFTER this ConfigMap (the",
            "last source wins). Single VM: put the same lines with credentials, taken from that",
            "Secret's stringData, in a root-only file (chmod 600) listed after this one.",
        ]
    if any(u is not None and u.scheme == "https" for u in (http, https)):
        warnings.append(
            "the proxy is https:// (TLS to the proxy): curl, Go, requests, httpx and Node undici "
            "speak TLS to it, but wget, Python urllib and Ruby Net::HTTP send a plaintext CONNECT "
            "to it, which an https:// listener refuses"
        )
    sections = [Section("Proxy", tuple(comment), tuple(proxy_vars))]

    # gRPC reads grpc_proxy, then https_proxy, then http_proxy, and speaks only plaintext CONNECT
    # to an http:// proxy (grpc-js http_proxy.ts, gRPC C-core, grpc-go Documentation/proxy.md).
    grpc_url = https if https is not None and https.scheme == "http" else None
    if grpc_url is None and http is not None and http.scheme == "http":
        grpc_url = http
    grpc_comment = [
        "gRPC (grpc-js, gRPC C-core) reads grpc_proxy, then https_proxy, then http_proxy, and",
        "tunnels with a plaintext CONNECT, so only to an http:// proxy.",
    ]
    if grpc_url is None:
        grpc_url = https or http
        assert grpc_url is not None  # active means at least one proxy is configured
        grpc_comment.append("This proxy is https:// only: gRPC logs an error and goes direct.")
        warnings.append(
            "gRPC clients (grpc-js, gRPC C-core, grpc-go) support only http:// proxies; with "
            "only an https:// proxy configured they go direct, so allow that traffic in the "
            "network policy or add an http:// listener (proxy.url http://, proxy.https_url "
            "https://)"
        )
    elif https is not None and grpc_url is not https:
        grpc_comment.append("The https:// proxy cannot carry gRPC, so this is the http:// one.")
        warnings.append(
            f"GRPC_PROXY is the http:// proxy {grpc_url} because gRPC clients cannot speak TLS to "
            f"the https:// proxy {https}; the proxy team must allow CONNECT on the http:// one"
        )
    sections.append(
        Section(
            "gRPC",
            tuple(grpc_comment),
            (var("GRPC_PROXY", grpc_url), var("grpc_proxy", grpc_url)),
        )
    )

    sections.append(
        Section(
            "Node",
            (
                "Node's built-in fetch (and http/https since 24.5) reads the proxy variables",
                "only with this set (Node 24, and late 22.x releases; older ones ignore it).",
            ),
            (Variable("NODE_USE_ENV_PROXY", "1"),),
        )
    )

    nop = no_proxy_list(settings)
    warnings.extend(nop.warnings)
    dep = settings.deployment
    if dep.kind == "kubernetes" and dep.service_ip is None:
        warnings.append(
            "NO_PROXY lacks the ClusterIP of the kubernetes Service because it is unknown: run "
            "`egress cluster-ip` and set deployment.service_ip"
        )
    np_comment = [
        "Never through the proxy: each group is one rule of `egress explain --all-rules`.",
    ]
    for group in nop.groups:
        np_comment += textwrap.wrap(
            f"{group.rule}: {', '.join(group.tokens)}",
            width=94,
            initial_indent="  ",
            subsequent_indent="      ",
            break_on_hyphens=False,
        )
        np_comment += textwrap.wrap(
            group.reason, width=94, initial_indent="    ", subsequent_indent="    "
        )
    np_comment += [
        "PostgreSQL and Redshift drivers speak TCP, not HTTP, and read no proxy variable: they go",
        "direct (or through `egress tunnel`) whatever NO_PROXY says.",
        "Spelling, for the runtimes that disagree: each domain is",
        "written as example.com AND .example.com, because Go, wget, Ruby, httpx and",
        "proxy-from-env read .example.com as subdomains only, and proxy-from-env and undici 6",
        "read example.com as that host only (the bare form also matches notexample.com in",
        "requests < 2.34, wget < 1.19.3 and grpc-js); 127.0.0.1 is listed beside 127.0.0.0/8",
        "for the runtimes that ignore CIDR; IPv6 is written bare (::1), never [::1], which",
        "makes httpx refuse every request.",
    ]
    sections.append(
        Section(
            "NO_PROXY",
            tuple(np_comment),
            tuple(Variable(name, nop.value) for name in NO_PROXY_NAMES),
        )
    )
    return sections


def _ca_section(settings: Settings, custom_ca_path: str, ca_bundle_path: str) -> Section:
    return Section(
        "Trust",
        (
            f"The custom CA from {_ca_source(settings)} must be mounted at {custom_ca_path}.",
            "NODE_EXTRA_CA_CERTS ADDS that file to Node's built-in roots, so it names the CA",
            "alone. SSL_CERT_FILE (OpenSSL: Python ssl, httpx, Go, Ruby) and REQUESTS_CA_BUNDLE",
            "(requests) REPLACE the default roots: pointed at the custom CA alone, every public",
            "site would fail verification. So they name a combined bundle, system roots + the",
            "custom CA, which the operator builds before the components start (a missing file",
            "breaks every TLS connection):",
            f"  cat {SYSTEM_ROOTS} {custom_ca_path} > {ca_bundle_path}",
            "(RHEL: /etc/pki/tls/certs/ca-bundle.crt; or Python's certifi: `python3 -m certifi`",
            "prints its path.) Mount both files at the same paths in every container.",
        ),
        (
            Variable("NODE_EXTRA_CA_CERTS", custom_ca_path),
            Variable("SSL_CERT_FILE", ca_bundle_path),
            Variable("REQUESTS_CA_BUNDLE", ca_bundle_path),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Formats

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._,:/@%*+-]*$")


def dotenv_value(value: str) -> str:
    """``value`` as a dotenv value: bare when every reader agrees on it, else single-quoted.

    A bare value of these characters reads the same in docker compose (v1 and v2), systemd,
    ``docker run --env-file``, ``kubectl create configmap --from-env-file`` and a shell's
    ``set -a; . file``; single quotes are literal in compose v2, systemd and the shell.

    >>> dotenv_value("localhost,.svc"), dotenv_value("/opt/my certs/ca.pem")
    ('localhost,.svc', "'/opt/my certs/ca.pem'")
    """
    if _SAFE_VALUE.match(value):
        return value
    if "'" in value or "\n" in value or "\r" in value or "\\" in value:
        raise ValueError(f"{value!r} cannot be written safely in a dotenv file")
    return f"'{value}'"


def _wrapped(comment: Iterable[str]) -> list[str]:
    """Comment lines wrapped to 92 columns; a line that starts with two spaces (a command, a
    list item) is kept as it is."""
    out: list[str] = []
    for line in comment:
        if line.startswith("  "):
            out.append(line)
        else:
            out += textwrap.wrap(line, width=92, break_on_hyphens=False) or [""]
    return out


def _dotenv(env: EnvFile) -> str:
    lines = [f"# {line}".rstrip() for line in env.header]
    lines += [
        "#",
        "# Values are written without quotes where none are needed, so docker compose, systemd,",
        "# `docker run --env-file` and a shell's `set -a; . ./egress.env` read them alike. For",
        "# Kubernetes render --format configmap (and --format secret for proxy credentials).",
    ]
    for section in env.sections:
        lines.append("")
        lines.append(f"# -- {section.title}")
        lines += [f"# {line}".rstrip() for line in _wrapped(section.comment)]
        lines += [f"{v.name}={dotenv_value(v.value)}" for v in section.variables]
    return "\n".join(lines) + "\n"


def _yaml_string(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def _kubernetes(env: EnvFile, options: RenderOptions, kind: str) -> str:
    secret = kind == "Secret"
    name = f"{options.name}-env" + ("-credentials" if secret else "")
    lines = [f"# {line}".rstrip() for line in env.header]
    lines.append("#")
    if secret:
        lines += [
            "# Holds the proxy password when one is configured: keep it out of version control.",
            "# Use it alone, or after the ConfigMap (`egress render env --format configmap`):",
        ]
    else:
        lines += [
            "# Never holds the proxy password (that is `egress render env --format secret`).",
            "# Use it in each container of the platform:",
        ]
    lines += [
        "#   envFrom:",
        f"#     - configMapRef: {{name: {options.name}-env}}",
        f"#     - secretRef: {{name: {options.name}-env-credentials}}   # last source wins",
        f"apiVersion: v1\nkind: {kind}",
        "metadata:",
        f"  name: {name}",
    ]
    if options.namespace:
        lines.append(f"  namespace: {_yaml_string(options.namespace)}")
    lines.append("  labels:")
    lines += [f"    {k}: {_yaml_string(v)}" for k, v in MANAGED_BY.items()]
    if secret:
        lines.append("type: Opaque")
    key = "stringData" if secret else "data"
    variables = [v for s in env.sections for v in s.variables]
    if not variables:
        lines.append(f"{key}: {{}}")
    else:
        lines.append(f"{key}:")
    for section in env.sections:
        if not section.variables:
            lines.append(f"# -- {section.title}")
            lines += [f"# {line}".rstrip() for line in _wrapped(section.comment)]
            continue
        lines.append(f"  # -- {section.title}")
        lines += [f"  # {line}".rstrip() for line in _wrapped(section.comment)]
        for var in section.variables:
            value = var.secret_value if secret and var.secret_value is not None else var.value
            lines.append(f"  {var.name}: {_yaml_string(value)}")
    return "\n".join(lines) + "\n"


def render(settings: Settings, options: RenderOptions) -> Artifact:
    """The environment in ``options.format`` (dotenv, configmap or secret)."""
    fmt = options.format or "dotenv"
    if fmt not in FORMATS:
        raise ValueError(f"unknown env format {fmt!r}; use one of: {', '.join(FORMATS)}")
    env = environment(settings)
    warnings = list(env.warnings)
    if fmt == "secret":
        text = _kubernetes(env, options, "Secret")
        if not env.has_credentials:
            warnings.append(
                "no proxy credentials are configured, so this Secret holds nothing secret; "
                "a ConfigMap (--format configmap) is enough"
            )
    else:
        text = _kubernetes(env, options, "ConfigMap") if fmt == "configmap" else _dotenv(env)
        if env.has_credentials:
            warnings.append(
                "the proxy wants a password, but this output never holds one: its proxy URLs "
                "carry no credentials (the proxy answers 407), so also render --format secret "
                "and mount that Secret after it"
            )
    artifact = Artifact(text, tuple(warnings))
    check_env_artifact(artifact, fmt)  # a variable over Linux's limit breaks every process
    return artifact
