"""The last step of every loader: warnings from the complete settings, then refuse or accept whole.

Only warnings about the settings themselves are made here (an ignored NO_PROXY token, an
unverified proxy, an unknown service IP). What the router does with settings (which destinations
go direct and why) is said from the router's own rules, not re-derived here.
"""

from __future__ import annotations

from dataclasses import replace

from egress.errors import ConfigError
from egress.noproxy import NoProxyMatcher
from egress.redact import shown
from egress.settings.fields import Problems
from egress.settings.model import Settings

_ASCII_SEPARATORS = frozenset(", \t\n\v\f\r")


def _separator_hint(token: str) -> str:
    """A hint for a token holding a space that is not a separator (U+00A0 and the like)."""
    odd = sorted({c for c in token if c.isspace() and c not in _ASCII_SEPARATORS})
    if not odd:
        return ""
    names = ", ".join(f"U+{ord(c):04X}" for c in odd)
    return (
        f"{names} is not a separator (only commas and ASCII spaces are, as in curl and Go); "
        "separate entries with commas"
    )


def finish(p: Problems, settings: Settings, *, excluded_field: str) -> Settings:
    """Add the warnings derived from complete settings, then refuse or accept them whole."""
    matcher = NoProxyMatcher.parse(settings.excluded_domains)
    for ignored in matcher.ignored:
        p.warn(
            excluded_field,
            f"{shown(ignored.token)} is ignored: {ignored.reason}",
            _separator_hint(ignored.token),
        )
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
    if p.errors:
        raise ConfigError(p.errors, p.warnings)
    return replace(settings, warnings=tuple(p.warnings))
