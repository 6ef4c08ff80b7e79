"""egress: one correct, explainable route for every outbound connection behind a corporate proxy.

>>> import egress
>>> settings = egress.Settings.from_proxy("http://proxy:3128", no_proxy="localhost,.corp")
>>> settings.router().decide("https://api.example.com/").route
'proxy'

``Client``, ``AsyncClient`` (httpx) and ``requests_session`` (requests) are imported on first use,
so ``import egress`` (and the CLI) does not pay for the HTTP libraries; so are the live settings
sources (``FileSource``, ``ConsoleSource``, ``StaticSource``: :mod:`egress.sources`).
"""

from typing import TYPE_CHECKING, Any

from egress.errors import (
    ConfigError,
    EgressError,
    EgressTransportError,
    Problem,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    UnsupportedRoute,
    URLError,
)
from egress.noproxy import NoProxyMatcher
from egress.router import Decision, Router, Rule, Target, parse_target
from egress.settings import (
    Deployment,
    ProxySettings,
    ProxyURL,
    Settings,
    load_environment,
    load_helm_values,
    load_settings,
    load_yaml,
)

if TYPE_CHECKING:
    from egress.sources import (
        ConsoleSource,
        FileSource,
        SettingsSource,
        SettingsSourceError,
        Snapshot,
        StaticSource,
    )
    from egress.transport.clients import AsyncClient, Client
    from egress.transport.requests_adapter import requests_session

__version__ = "0.1.0"

_LAZY = {
    "Client": "egress.transport.clients",
    "AsyncClient": "egress.transport.clients",
    "requests_session": "egress.transport.requests_adapter",
    **dict.fromkeys(
        (
            "ConsoleSource",
            "FileSource",
            "SettingsSource",
            "SettingsSourceError",
            "Snapshot",
            "StaticSource",
        ),
        "egress.sources",
    ),
}


def __getattr__(name: str) -> Any:
    """Import the HTTP clients on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'egress' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "Client",
    "ConfigError",
    "ConsoleSource",
    "Decision",
    "Deployment",
    "EgressError",
    "EgressTransportError",
    "FileSource",
    "NoProxyMatcher",
    "Problem",
    "ProxyAuthRequired",
    "ProxyDenied",
    "ProxyError",
    "ProxySettings",
    "ProxyTLSError",
    "ProxyURL",
    "ProxyUnreachable",
    "Router",
    "Rule",
    "Settings",
    "SettingsSource",
    "SettingsSourceError",
    "Snapshot",
    "StaticSource",
    "Target",
    "URLError",
    "UnsupportedRoute",
    "__version__",
    "load_environment",
    "load_helm_values",
    "load_settings",
    "load_yaml",
    "parse_target",
    "requests_session",
]
