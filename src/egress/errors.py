"""Every error egress raises, under one root.

::

    EgressError
     ├── ConfigError          settings refused; carries every Problem (field, message, hint)
     ├── UsageError           the command line itself is wrong (exit 2); names the flag
     ├── URLError             a destination URL egress cannot route (no host, bad characters)
     ├── StoreError           the console's database: a bad --db URL, an unreachable server, an
     │                        unwritable file (the URL's password masked)
     └── EgressTransportError a request could not be carried out; says which hop failed
          ├── ProxyUnreachable    the proxy did not accept a TCP (or TLS) connection
          ├── ProxyTLSError       the proxy's certificate is not trusted (set proxy.ca_file)
          ├── ProxyError          any other refusal by the proxy (other non-2xx CONNECT answer)
          │    ├── ProxyDenied         the proxy answered 403 (the proxy team must allow it)
          │    └── ProxyAuthRequired   the proxy answered 407 (set username and password_file)
          ├── TLSIntercepted      inside the tunnel, the origin's certificate comes from the
          │                       proxy's (or another operator-added) CA: TLS is intercepted
          └── UnsupportedRoute    the route decided cannot be carried by this client
                                  (an HTTP request decided ``tunnel``)

``str(exc)`` is the whole story: what failed, on which hop, the value (redacted), and the fix.

Every error pickles whole (``problems``, ``warnings``, ``hint``, ``hop``...), whatever its
``__init__`` takes, so it survives a ``multiprocessing`` pool or a ``concurrent.futures`` worker:

>>> import pickle
>>> exc = ConfigError([Problem("proxy.url", "is missing", "set proxy.url")])
>>> back = pickle.loads(pickle.dumps(exc))
>>> back.problems == exc.problems, str(back), back.hint
(True, 'proxy.url: is missing (set proxy.url)', 'set proxy.url')

The HTTP clients raise subclasses that are *also* their library's own errors, so existing
``except httpx.TransportError`` / ``except requests.RequestException`` handlers keep working:
``egress.Client`` raises e.g. ``egress.transport.HTTPXProxyDenied`` (a :class:`ProxyDenied` and an
``httpx.ProxyError``), ``egress.requests_session`` raises
``egress.requests_adapter.RequestsProxyDenied`` (also a ``requests.exceptions.ProxyError``).
Errors of the origin hop (its TLS, its refusals, timeouts once the tunnel is up) are not
translated: they stay the library's own errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


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

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds with ``cls(*self.args)``, which breaks on every subclass whose
        # __init__ takes other arguments than its message (ConfigError's problems, the HTTP
        # clients' cooperative errors); rebuild from args and the instance's attributes instead.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[EgressError], args: tuple[Any, ...], state: dict[str, Any]) -> EgressError:
    """An error back from a pickle: its class, its args and its attributes, without __init__."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


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


class UsageError(EgressError):
    """The command line itself is wrong (exit 2): a flag's value, a missing or extra argument."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class URLError(EgressError, ValueError):
    """A destination URL that cannot be routed: no host, or a host with forbidden characters."""


class StoreError(EgressError):
    """The console's database cannot be used: a bad ``--db`` URL, a PostgreSQL server that does not
    answer, a SQLite file that cannot be written. Names the URL (password masked) and the fix."""


class EgressTransportError(EgressError):
    """A request could not be carried out. The message names the hop (proxy or origin).

    ``proxy`` is the proxy URL as shown to people (password masked), ``target`` the destination's
    ``host:port``, ``hop`` which hop failed (``proxy-tcp``, ``proxy-tls``, ``proxy-connect`` for
    the CONNECT exchange, ``proxy-request`` for a plain-HTTP request the proxy answered itself,
    ``route`` when no hop was tried), ``status`` the proxy's HTTP status when it answered, and
    ``hint`` the fix.
    """

    def __init__(
        self,
        message: str,
        *,
        proxy: str | None = None,
        target: str | None = None,
        hop: str | None = None,
        status: int | None = None,
        hint: str = "",
    ) -> None:
        # cooperative: the HTTP clients' subclasses also derive from httpx / requests errors
        super().__init__(message)
        self.proxy = proxy
        self.target = target
        self.hop = hop
        self.status = status
        self.hint = hint


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


class TLSIntercepted(EgressTransportError):
    """Inside the proxy's tunnel, the origin's certificate was issued by the proxy's CA (or another
    CA the operator added), not by a public one: the proxy intercepts TLS. Trust that CA for this
    destination on purpose, or ask the proxy team to exempt the destination from interception."""


class UnsupportedRoute(EgressTransportError):
    """The router decided a route this client cannot carry out.

    An HTTP client carries ``proxy`` and ``direct``; ``tunnel`` (a TCP warehouse carried through
    CONNECT when ``tunnel_tcp_warehouses`` is on) belongs to ``egress tunnel`` and the warehouse's
    own driver, so an HTTP request to such a host is refused rather than guessed at.
    """
