"""Every error egress raises, under one root.

::

    EgressError
     ├── ConfigError          settings refused; carries every Problem (field, message, hint)
     ├── URLError             a destination URL egress cannot route (no host, bad characters)
     └── EgressTransportError a request could not be carried out; says which hop failed
          ├── ProxyUnreachable    the proxy did not accept a TCP (or TLS) connection
          ├── ProxyTLSError       the proxy's certificate is not trusted (set proxy.ca_file)
          ├── ProxyDenied         the proxy answered 403 (the proxy team must allow it)
          ├── ProxyAuthRequired   the proxy answered 407 (set username and password_file)
          └── ProxyError          any other refusal by the proxy

``str(exc)`` is the whole story: what failed, on which hop, the value (redacted), and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding about settings: the field, what is wrong with it, and how to fix it."""

    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "hint": self.hint}


class EgressError(Exception):
    """The root of every error egress raises on purpose."""

    hint: str = ""


class ConfigError(EgressError):
    """Settings were refused as a whole; ``problems`` lists every reason, ``warnings`` the rest."""

    def __init__(self, problems: Iterable[Problem], warnings: Iterable[Problem] = ()) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.warnings: tuple[Problem, ...] = tuple(warnings)
        first = self.problems[0] if self.problems else Problem("", "invalid settings")
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        super().__init__(f"{first}{suffix}")
        self.hint = first.hint


class URLError(EgressError, ValueError):
    """A destination URL that cannot be routed: no host, or a host with forbidden characters."""


class EgressTransportError(EgressError):
    """A request could not be carried out. The message names the hop (proxy or origin)."""

    def __init__(self, message: str, *, proxy: str | None = None, target: str | None = None):
        super().__init__(message)
        self.proxy = proxy
        self.target = target


class ProxyUnreachable(EgressTransportError):
    """The proxy did not accept the connection (down, wrong address, firewall)."""


class ProxyTLSError(EgressTransportError):
    """TLS to an https:// proxy failed: its certificate is not trusted or does not match."""


class ProxyError(EgressTransportError):
    """The proxy refused the request for a reason other than 403 or 407."""


class ProxyDenied(ProxyError):
    """The proxy answered 403: the destination is not on its allowlist."""


class ProxyAuthRequired(ProxyError):
    """The proxy answered 407: it wants credentials, or refused the ones given."""
