"""Kerberos (Negotiate, RFC 4559) tokens for the proxy: one fresh token per new connection.

A :class:`Negotiator` mints the ``Proxy-Authorization: Negotiate <token>`` value each new
connection to the proxy sends with its first request (CONNECT or absolute form). Kerberos needs
no challenge, so the token goes out preemptively: one round trip, as with Basic. A token is
never reused: the proxy's replay cache refuses a token it has seen on another connection.

The identity is the usual one (the credential cache of ``kinit``/``KRB5CCNAME``, or the client
keytab of ``KRB5_CLIENT_KTNAME``) unless ``proxy.kerberos.keytab`` + ``principal`` are set: then
egress gets its own tickets from that keytab into a private in-memory credential cache, and gets
new ones before they expire. ``gssapi`` (the ``kerberos`` extra) is imported only here, only
when a token is first needed.

>>> from egress.settings import KerberosSettings, ProxyURL
>>> Negotiator(KerberosSettings(), ProxyURL("http", "proxy.corp", 3128)).spn
'HTTP/proxy.corp'
"""

from __future__ import annotations

import base64
import itertools
import os
import threading
import time
from typing import Any, Final

from egress.errors import Problem
from egress.redact import printable, shown
from egress.settings import KerberosSettings, ProxyURL, Settings

SPNEGO_OID: Final = "1.3.6.1.5.5.2"
"""The mechanism of HTTP Negotiate (SPNEGO), which carries the Kerberos token."""
RENEW_BEFORE_SECONDS: Final = 60
"""Tickets from a keytab are renewed when they have less than this left."""

_CACHES = itertools.count(1)


class KerberosFailure(Exception):
    """No Negotiate token could be made: a sentence naming the cause, and the fix."""

    def __init__(self, cause: str, message: str, hint: str) -> None:
        super().__init__(f"{message}: {hint}")
        self.cause = cause
        """``no-ticket``, ``expired``, ``unknown-spn``, ``clock-skew``, ``keytab``, ``library``
        or ``other``."""
        self.message = message
        self.hint = hint


class Negotiator:
    """Mints Negotiate tokens for one proxy (its SPN) with one identity; thread-safe."""

    def __init__(self, kerberos: KerberosSettings, proxy: ProxyURL) -> None:
        self.kerberos = kerberos
        self.spn = kerberos.spn_for(proxy)
        self._lock = threading.Lock()
        self._creds: Any = None
        self._expires = 0.0
        self._ccache = f"MEMORY:egress-{id(self):x}-{next(_CACHES)}"

    @property
    def identity(self) -> str:
        """Who egress authenticates as, for messages: the principal, or the default cache."""
        return self.kerberos.principal or "the default Kerberos credential cache"

    def token(self) -> str:
        """A fresh base64 Negotiate token for the proxy; raises :class:`KerberosFailure`."""
        gssapi = _gssapi()
        creds = self._credentials(gssapi)
        try:
            context = gssapi.SecurityContext(
                name=self._target(gssapi),
                mech=gssapi.OID.from_int_seq(SPNEGO_OID),
                usage="initiate",
                creds=creds,
            )
            out = context.step()
        except gssapi.exceptions.GSSError as exc:
            if self.kerberos.keytab is not None and _cause(exc) == "expired":
                with self._lock:
                    self._creds = None  # a ticket expired early: get a new one, once
                return self._retry(gssapi)
            raise self._failure(exc) from None
        return base64.b64encode(out or b"").decode("ascii")

    def header(self) -> str:
        """The ``Proxy-Authorization`` value: ``Negotiate <fresh token>``."""
        return f"Negotiate {self.token()}"

    def _retry(self, gssapi: Any) -> str:
        try:
            context = gssapi.SecurityContext(
                name=self._target(gssapi),
                mech=gssapi.OID.from_int_seq(SPNEGO_OID),
                usage="initiate",
                creds=self._credentials(gssapi),
            )
            return base64.b64encode(context.step() or b"").decode("ascii")
        except gssapi.exceptions.GSSError as exc:
            raise self._failure(exc) from None

    def _target(self, gssapi: Any) -> Any:
        spn = self.spn
        if "@" in spn:  # a full principal, realm included
            return gssapi.Name(spn, gssapi.NameType.kerberos_principal)
        service, _, host = spn.partition("/")
        return gssapi.Name(f"{service}@{host}", gssapi.NameType.hostbased_service)

    def _credentials(self, gssapi: Any) -> Any:
        """None (the default identity, read anew each time), or the keytab's, renewed."""
        kt = self.kerberos
        if kt.keytab is None or kt.principal is None:
            return None
        with self._lock:
            if self._creds is not None and time.monotonic() < self._expires:
                return self._creds
            try:
                creds = gssapi.Credentials(
                    name=gssapi.Name(kt.principal, gssapi.NameType.kerberos_principal),
                    usage="initiate",
                    store={"client_keytab": kt.keytab, "ccache": self._ccache},
                )
                lifetime = creds.lifetime
            except gssapi.exceptions.GSSError as exc:
                raise self._failure(exc, keytab=True) from None
            if lifetime is not None and lifetime <= RENEW_BEFORE_SECONDS:
                # the cached ticket is about to expire: a new cache makes MIT ask the KDC again
                self._ccache = f"MEMORY:egress-{id(self):x}-{next(_CACHES)}"
                try:
                    creds = gssapi.Credentials(
                        name=gssapi.Name(kt.principal, gssapi.NameType.kerberos_principal),
                        usage="initiate",
                        store={"client_keytab": kt.keytab, "ccache": self._ccache},
                    )
                    lifetime = creds.lifetime
                except gssapi.exceptions.GSSError as exc:
                    raise self._failure(exc, keytab=True) from None
            left = (lifetime or 0) - RENEW_BEFORE_SECONDS
            self._creds, self._expires = creds, time.monotonic() + max(left, 0)
            return creds

    def _failure(self, exc: Exception, *, keytab: bool = False) -> KerberosFailure:
        cause = _cause(exc)
        why = _words(exc)
        who = shown(self.kerberos.principal) if self.kerberos.principal else "this host"
        if keytab and cause in ("no-ticket", "other", "keytab"):
            return KerberosFailure(
                "keytab",
                f"could not get a Kerberos ticket for {who} from the keytab "
                f"{shown(self.kerberos.keytab)} ({why})",
                "check proxy.kerberos.keytab and principal (klist -k shows what the keytab "
                "holds) and that the KDC knows that principal",
            )
        if cause == "no-ticket":
            return KerberosFailure(
                cause,
                f"no Kerberos ticket for the proxy's Negotiate authentication ({why})",
                "run kinit for the platform's principal, or give a client keytab "
                "(proxy.kerberos.keytab + principal, or KRB5_CLIENT_KTNAME)",
            )
        if cause == "expired":
            return KerberosFailure(
                cause,
                f"the Kerberos ticket of {who} has expired ({why})",
                "renew it with kinit, or give a client keytab (proxy.kerberos.keytab + "
                "principal), from which egress renews tickets itself",
            )
        if cause == "unknown-spn":
            return KerberosFailure(
                cause,
                f"the KDC does not know the proxy's service principal {shown(self.spn)} ({why})",
                "set proxy.kerberos.spn to the principal in the proxy's keytab (ask the proxy "
                "team), and write the proxy by the DNS name that principal names",
            )
        if cause == "clock-skew":
            return KerberosFailure(
                cause,
                f"the KDC refused the ticket request: the clocks differ too much ({why})",
                "synchronise this host's clock with the KDC's (NTP); Kerberos allows 5 minutes",
            )
        return KerberosFailure(
            cause,
            f"could not make a Negotiate token for {shown(self.spn)} ({why})",
            "check the Kerberos configuration (KRB5_CONFIG, the realm's KDC) and the ticket "
            "with klist",
        )


def _gssapi() -> Any:
    """The gssapi module, or a failure that says how to install it."""
    try:
        import gssapi
    except ImportError:
        raise KerberosFailure(
            "library",
            "proxy.auth is negotiate but the gssapi package is not installed",
            "install egress with its kerberos extra: pip install 'egress[kerberos]' "
            "(it needs libkrb5-dev and gcc where no wheel exists)",
        ) from None
    return gssapi


def _words(exc: Exception) -> str:
    """The Kerberos library's own words for ``exc``: its minor message, bounded and escaped."""
    minor = getattr(exc, "gen_message", None)
    text = ""
    if callable(minor):
        try:
            text = str(minor())
        except Exception:
            text = ""
    text = text or str(exc)
    found = text.split("Minor (", 1)
    if len(found) == 2:
        text = found[1].partition("): ")[2] or text
    return printable(text.replace("\x00", "").strip().rstrip("."))[:200]


def _cause(exc: Exception) -> str:
    """Which failure ``exc`` is, from the library's class and words."""
    text = str(exc).lower()
    name = type(exc).__name__
    if "clock skew" in text or "not yet valid" in text:
        return "clock-skew"
    if "expired" in text or name == "ExpiredCredentialsError":
        return "expired"
    if "not found in kerberos database" in text and ("server" in text or "krbtgt" in text):
        return "unknown-spn"
    if "key table" in text or "keytab" in text:
        return "keytab"
    if (
        name == "MissingCredentialsError"
        or "no kerberos credentials" in text
        or "credentials cache" in text
    ):
        return "no-ticket"
    return "other"


def credential_warnings(settings: Settings) -> list[Problem]:
    """What ``egress validate`` can tell about the Kerberos identity without a network: with
    ``negotiate`` and no keytab, whether the credential cache holds a ticket that has not
    expired (the check reads the cache only; a ``KRB5_CLIENT_KTNAME`` keytab is not tried)."""
    proxy = settings.proxy
    k = proxy.kerberos
    if proxy.auth != "negotiate" or k is None or k.keytab is not None:
        return []
    if os.environ.get("KRB5_CLIENT_KTNAME"):
        return []
    try:
        gssapi = _gssapi()
    except KerberosFailure as exc:
        return [Problem("proxy.auth", exc.message, exc.hint)]
    try:
        lifetime = gssapi.Credentials(usage="initiate").lifetime
    except gssapi.exceptions.GSSError as exc:
        cause = _cause(exc)
        if cause == "expired":
            return [
                Problem(
                    "proxy.auth",
                    f"the Kerberos ticket in the credential cache has expired ({_words(exc)})",
                    "renew it with kinit, or set proxy.kerberos.keytab and principal",
                )
            ]
        return [
            Problem(
                "proxy.auth",
                f"no Kerberos ticket in the credential cache ({_words(exc)})",
                "run kinit for the platform's principal, or set proxy.kerberos.keytab and "
                "principal (or KRB5_CLIENT_KTNAME)",
            )
        ]
    if lifetime is not None and lifetime <= 0:
        return [
            Problem(
                "proxy.auth",
                "the Kerberos ticket in the credential cache has expired",
                "renew it with kinit, or set proxy.kerberos.keytab and principal",
            )
        ]
    return []
