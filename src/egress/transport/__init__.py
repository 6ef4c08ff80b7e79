"""Carrying out the router's decisions: the HTTP clients egress offers, and what they share.

One module per seam; the first four import no HTTP library, so ``egress.requests_session``
never loads httpx and ``egress.Client`` never loads requests:

- :mod:`~egress.transport.plan`: :class:`Planner` turns a URL (or an origin) into a
  :class:`Plan`: the router's decision, the pool that carries it, a ``resolve`` address;
- :mod:`~egress.transport.failures`: which hop failed, as :class:`HopFailure` data, with one
  message catalogue for every client, and the reading of a proxy's own answers;
- :mod:`~egress.transport.trust`: the two SSL contexts (origin, proxy), never process-wide;
- :mod:`~egress.transport.deadline`: the overall deadline of a CONNECT exchange (requests);
- :mod:`~egress.transport.proxy_hop` (httpcore): the streams of the proxy pools, watched while
  a connection to the proxy is set up, to tell which hop failed;
- :mod:`~egress.transport.clients` (httpx): ``Client``, ``AsyncClient`` and their transports;
- :mod:`~egress.transport.requests_adapter` (requests): ``requests_session`` and its adapter;
- :mod:`~egress.transport.follow`: following a live settings source (no HTTP library): which
  snapshot a request starts in, and when the previous proxy's pools are closed.

The httpx and requests names are importable from here too (``egress.transport.Client``); they
are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from egress.transport.failures import (
    PLAIN_ERRORS,
    ErrorClasses,
    FailureKind,
    HopFailure,
    proxy_answer_detail,
    proxy_no_answer,
    proxy_refused,
    refusal_by_proxy,
)
from egress.transport.plan import DEFAULT_TIMEOUT_SECONDS, DIRECT, Plan, Planner, PoolKey
from egress.transport.trust import VerifyTypes, origin_ssl_context, proxy_ssl_context

if TYPE_CHECKING:
    from egress.transport.clients import (
        DECISION_EXTENSION,
        DEFAULT_LIMITS,
        DEFAULT_TIMEOUT,
        HTTPX_ERRORS,
        SNAPSHOT_EXTENSION,
        AsyncClient,
        AsyncEgressTransport,
        AsyncSourceTransport,
        Client,
        EgressTransport,
        HTTPXProxyAuthRequired,
        HTTPXProxyDenied,
        HTTPXProxyError,
        HTTPXProxyPoolTimeout,
        HTTPXProxyTLSError,
        HTTPXProxyUnreachable,
        HTTPXUnsupportedRoute,
        SourceTransport,
    )
    from egress.transport.requests_adapter import (
        REQUESTS_ERRORS,
        EgressAdapter,
        RequestsProxyAuthRequired,
        RequestsProxyDenied,
        RequestsProxyError,
        RequestsProxyTLSError,
        RequestsProxyUnreachable,
        RequestsUnsupportedRoute,
        SourceAdapter,
        requests_session,
    )

_HTTPX = "egress.transport.clients"
_REQUESTS = "egress.transport.requests_adapter"
_LAZY = {
    **dict.fromkeys(
        (
            "DECISION_EXTENSION",
            "DEFAULT_LIMITS",
            "DEFAULT_TIMEOUT",
            "HTTPX_ERRORS",
            "AsyncClient",
            "AsyncEgressTransport",
            "Client",
            "EgressTransport",
            "HTTPXProxyAuthRequired",
            "HTTPXProxyDenied",
            "HTTPXProxyError",
            "HTTPXProxyPoolTimeout",
            "HTTPXProxyTLSError",
            "HTTPXProxyUnreachable",
            "HTTPXUnsupportedRoute",
            "SNAPSHOT_EXTENSION",
            "AsyncSourceTransport",
            "SourceTransport",
        ),
        _HTTPX,
    ),
    **dict.fromkeys(
        (
            "REQUESTS_ERRORS",
            "EgressAdapter",
            "RequestsProxyAuthRequired",
            "RequestsProxyDenied",
            "RequestsProxyError",
            "RequestsProxyTLSError",
            "RequestsProxyUnreachable",
            "RequestsUnsupportedRoute",
            "SourceAdapter",
            "requests_session",
        ),
        _REQUESTS,
    ),
}


def __getattr__(name: str) -> Any:
    """Load the httpx or requests part on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'egress.transport' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DECISION_EXTENSION",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TIMEOUT_SECONDS",
    "DIRECT",
    "HTTPX_ERRORS",
    "PLAIN_ERRORS",
    "REQUESTS_ERRORS",
    "SNAPSHOT_EXTENSION",
    "AsyncClient",
    "AsyncEgressTransport",
    "AsyncSourceTransport",
    "Client",
    "EgressAdapter",
    "EgressTransport",
    "ErrorClasses",
    "FailureKind",
    "HTTPXProxyAuthRequired",
    "HTTPXProxyDenied",
    "HTTPXProxyError",
    "HTTPXProxyPoolTimeout",
    "HTTPXProxyTLSError",
    "HTTPXProxyUnreachable",
    "HTTPXUnsupportedRoute",
    "HopFailure",
    "Plan",
    "Planner",
    "PoolKey",
    "RequestsProxyAuthRequired",
    "RequestsProxyDenied",
    "RequestsProxyError",
    "RequestsProxyTLSError",
    "RequestsProxyUnreachable",
    "RequestsUnsupportedRoute",
    "SourceAdapter",
    "SourceTransport",
    "VerifyTypes",
    "origin_ssl_context",
    "proxy_answer_detail",
    "proxy_no_answer",
    "proxy_refused",
    "proxy_ssl_context",
    "refusal_by_proxy",
    "requests_session",
]
