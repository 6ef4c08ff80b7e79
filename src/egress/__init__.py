"""egress: one correct, explainable route for every outbound connection behind a corporate proxy.

>>> import egress
>>> settings = egress.Settings.from_proxy("http://proxy:3128", no_proxy="localhost,.corp")
>>> settings.router().decide("https://api.example.com/").route
'proxy'
"""

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

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Decision",
    "Deployment",
    "EgressError",
    "EgressTransportError",
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
    "Target",
    "URLError",
    "__version__",
    "load_environment",
    "load_helm_values",
    "load_settings",
    "load_yaml",
    "parse_target",
]
