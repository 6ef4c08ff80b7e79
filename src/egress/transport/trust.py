"""Trust: two separate SSL contexts, one per hop, never the process-wide defaults.

The origin is verified against the system roots + certifi + ``proxy.ca_file`` / ``proxy.ca_pem``
(the CA of a TLS-intercepting proxy); ``verify=`` a CA file adds to that, ``verify=`` an
``ssl.SSLContext`` is used as given, ``verify=False`` switches off the origin check for this
client only. The proxy is verified against system roots + certifi + ``proxy.ca_file`` /
``proxy.ca_pem``; ``proxy.verify: false`` switches off only that check. Nothing process-wide is
changed; the only process-wide input is where OpenSSL finds the system roots (its default paths,
which ``SSL_CERT_FILE``/``SSL_CERT_DIR`` can move). No HTTP library is imported here.
"""

from __future__ import annotations

import os
import ssl
from typing import TypeAlias

import certifi

from egress.errors import ConfigError, Problem
from egress.redact import shown
from egress.settings import ProxySettings

__all__ = ["VerifyTypes", "operator_cas", "origin_ssl_context", "proxy_ssl_context"]

VerifyTypes: TypeAlias = "bool | str | os.PathLike[str] | ssl.SSLContext"


def _with_defaults() -> ssl.SSLContext:
    """The system roots (OpenSSL's default paths) plus certifi's bundle."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=certifi.where())
    return ctx


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_cas(ctx: ssl.SSLContext, path: str, field: str) -> None:
    try:
        if os.path.isdir(path):
            ctx.load_verify_locations(capath=path)
        else:
            ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(
            [
                Problem(
                    field,
                    f"{path!r} cannot be loaded as CA certificates ({reason})",
                    "point it at a PEM file of CA certificates",
                )
            ]
        ) from exc


def _add_proxy_cas(ctx: ssl.SSLContext, proxy: ProxySettings) -> None:
    if proxy.ca_file:
        _load_cas(ctx, proxy.ca_file, "proxy.ca_file")
    if proxy.ca_pem:
        try:
            ctx.load_verify_locations(cadata=proxy.ca_pem)
        except (ValueError, ssl.SSLError) as exc:
            raise ConfigError(
                [Problem("proxy.ca_pem", "holds no usable PEM certificate", "paste the CA as PEM")]
            ) from exc


def origin_ssl_context(proxy: ProxySettings, verify: VerifyTypes = True) -> ssl.SSLContext:
    """Trust for the origin hop: the defaults extended, never replaced.

    ``True``: system roots + certifi + ``proxy.ca_file``/``ca_pem`` (a TLS-intercepting proxy
    re-signs origins with its CA). A path: the same plus that CA file (or directory). An
    ``SSLContext``: used as given. ``False``: no origin verification, for this client only.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        return _unverified()
    if not isinstance(verify, bool | str | os.PathLike):
        raise TypeError(
            f"verify must be a bool, a CA file path or an ssl.SSLContext, not {shown(verify)}"
        )
    ctx = _with_defaults()
    _add_proxy_cas(ctx, proxy)
    if isinstance(verify, str | os.PathLike):
        _load_cas(ctx, os.fspath(verify), "verify")
    return ctx


def proxy_ssl_context(proxy: ProxySettings) -> ssl.SSLContext:
    """Trust for TLS to an ``https://`` proxy: system roots + certifi + ``proxy.ca_file``/
    ``ca_pem``; with ``proxy.verify: false`` the proxy's certificate is not checked (and only it).
    """
    if not proxy.verify:
        return _unverified()
    ctx = _with_defaults()
    _add_proxy_cas(ctx, proxy)
    return ctx


def operator_cas(proxy: ProxySettings) -> ssl.SSLContext | None:
    """Only the CAs the operator added for the proxy (``proxy.ca_file`` / ``ca_pem``), no host
    name check; None when there are none. What :mod:`egress.transport.intercept` verifies a
    certificate presented inside the tunnel against: does the proxy intercept?"""
    if not (proxy.ca_file or proxy.ca_pem):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _add_proxy_cas(ctx, proxy)
    return ctx
