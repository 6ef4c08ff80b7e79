"""Rendered artifacts: each one agrees with the router, because each one asks it.

Every renderer is ``render(settings, options) -> Artifact``; ``egress render KIND`` prints
``Artifact.text`` on stdout and each of ``Artifact.warnings`` on stderr.

An environment variable has a size limit of its own on Linux, which no renderer may pass without
a word (:func:`check_env_size`, :func:`check_env_artifact`):

>>> check_env_size("NO_PROXY", "localhost,.svc")
>>> check_env_size("NO_PROXY", "x" * 140_000)  # doctest: +ELLIPSIS
Traceback (most recent call last):
egress.errors.ConfigError: excluded_domains: NO_PROXY would be 140,009 bytes ...limit of 131,071...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from egress.errors import ConfigError, Problem
from egress.settings import Settings


@dataclass(frozen=True)
class RenderOptions:
    """What the command line can add to the settings for one artifact."""

    format: str | None = None
    """env: dotenv | configmap | secret."""
    proxy_cidr: str | None = None
    """networkpolicy: where the proxy is, when the settings name it by host name."""
    warehouse_cidrs: tuple[tuple[str, str], ...] = ()
    """networkpolicy: (warehouse kind, CIDR) pairs that direct routes may reach."""
    features: tuple[str, ...] | None = None
    """catalog scope; None means the settings' own ``features``."""
    namespace: str | None = None
    pod_labels: tuple[tuple[str, str], ...] = ()
    """networkpolicy: select the platform's pods by these labels (default: every pod)."""
    in_cluster: bool = True
    """networkpolicy: allow traffic between the pods of the namespace."""
    name: str = "egress"


@dataclass(frozen=True)
class Artifact:
    """One rendered artifact: its text, and what a person should know about it."""

    text: str
    warnings: tuple[str, ...] = ()


Renderer = Callable[[Settings, RenderOptions], Artifact]

KINDS = ("helm", "env", "networkpolicy", "squid", "pac")


def renderer(kind: str) -> Renderer:
    """The ``render`` function of ``egress.render.<kind>``."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact {kind!r}; use one of: {', '.join(KINDS)}")
    module = importlib.import_module(f"egress.render.{kind}")
    func: Renderer = module.render
    return func


MAX_ARG_STRLEN = 131072
"""Linux's limit on one environment string, ``NAME=value`` and its terminating NUL (32 pages of
4 KiB). ``execve`` refuses a larger one with E2BIG, "Argument list too long"."""

NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")


def negotiate_warning(settings: Settings) -> str | None:
    """The warning of an artifact for other runtimes when egress answers the proxy with
    Kerberos (Negotiate): no environment variable or chart value can carry it."""
    proxy = settings.proxy
    if proxy.auth != "negotiate" or not (proxy.enabled and proxy.configured):
        return None
    return (
        "proxy.auth is negotiate (Kerberos), which no proxy environment variable or chart value "
        "can carry: other runtimes reach this proxy only with their own Kerberos support (curl "
        "--proxy-negotiate -U :, Java with a JAAS login and Negotiate proxy auth, Go with a "
        "SPNEGO library); see the README, Kerberos (Negotiate) proxy authentication"
    )


def check_env_size(name: str, value: str, field: str | None = None) -> None:
    """Raise :class:`ConfigError` when ``NAME=value`` is too large for Linux to pass to a process.

    A larger variable is written without complaint by every tool, and then *every* program started
    with it fails with "Argument list too long": refuse it here, naming the size and the fix.
    ``field`` is the setting it comes from (NO_PROXY: ``excluded_domains``).
    """
    size = len(name.encode()) + 1 + len(value.encode())  # "NAME=value", without the NUL
    if size + 1 <= MAX_ARG_STRLEN:
        return
    if field is None:
        field = "excluded_domains" if name in NO_PROXY_NAMES else name
    raise ConfigError(
        [
            Problem(
                field,
                f"{name} would be {size:,} bytes (counting '{name}='), over Linux's limit of "
                f"{MAX_ARG_STRLEN - 1:,} bytes for one environment variable (MAX_ARG_STRLEN, "
                "128 KiB with its terminating NUL), so every process started with it would "
                "fail with 'Argument list too long'",
                "use fewer, broader entries: one wildcard domain (.corp.example) instead of many "
                "hosts under it, one CIDR (10.20.0.0/16) instead of many addresses",
            )
        ]
    )


def env_variables(text: str, fmt: str = "dotenv") -> list[tuple[str, str]]:
    """The (name, value) pairs a rendered env artifact sets, read back as its consumers read it.

    ``dotenv``: ``NAME=value`` lines, a value bare or in single quotes (what ``render env``
    writes); ``configmap`` / ``secret``: the ``data`` / ``stringData`` of the YAML object.

    >>> env_variables("# c\\nNO_PROXY=a,.b\\nSSL_CERT_FILE='/x y'\\n")
    [('NO_PROXY', 'a,.b'), ('SSL_CERT_FILE', '/x y')]
    """
    if fmt == "dotenv":
        out: list[tuple[str, str]] = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep:
                continue
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            out.append((name.strip(), value))
        return out
    doc = yaml.safe_load(text)
    data = (doc.get("stringData") or doc.get("data") or {}) if isinstance(doc, dict) else {}
    return [(str(k), str(v)) for k, v in data.items()] if isinstance(data, dict) else []


def check_env_artifact(artifact: Artifact, fmt: str = "dotenv") -> None:
    """:func:`check_env_size` for every variable of a rendered env artifact."""
    for name, value in env_variables(artifact.text, fmt):
        check_env_size(name, value)
