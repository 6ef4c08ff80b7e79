"""Moved to :mod:`egress.transport.requests_adapter`; this old import path keeps working."""

from egress.transport.requests_adapter import (
    REQUESTS_ERRORS,
    EgressAdapter,
    RequestsProxyAuthRequired,
    RequestsProxyDenied,
    RequestsProxyError,
    RequestsProxyTLSError,
    RequestsProxyUnreachable,
    RequestsUnsupportedRoute,
    requests_session,
)

__all__ = [
    "REQUESTS_ERRORS",
    "EgressAdapter",
    "RequestsProxyAuthRequired",
    "RequestsProxyDenied",
    "RequestsProxyError",
    "RequestsProxyTLSError",
    "RequestsProxyUnreachable",
    "RequestsUnsupportedRoute",
    "requests_session",
]
