"""The proxy address: a URL (``http://host:port``, ``https://host:port``) or host / port / type.

Refuses every form egress cannot carry out, one problem per mistake. Credentials in the URL are
found by :func:`egress.redact.split_userinfo` *before* the URL is parsed, so a password holding
``/``, ``?``, ``#`` or ``@`` is reported as credentials (never as "an invalid port") and never
echoed.

>>> p = Problems()
>>> parse_proxy_url("https://proxy.corp.example:3129", "proxy.url", p)
ProxyURL(scheme='https', host='proxy.corp.example', port=3129, explicit_port=True)
>>> parse_proxy_url("http://alice:pa/ss@proxy:3128", "proxy.url", p)
>>> print(p.errors[0])  # doctest: +NORMALIZE_WHITESPACE
proxy.url: "http://alice:********@proxy:3128" has credentials in the URL, where they would leak
into logs and environment variables (remove them from the URL and set proxy.username and
proxy.password_file)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from egress.redact import printable, shown, split_userinfo
from egress.settings.fields import Problems, is_ipv6, port, text, valid_host
from egress.settings.model import PROXY_TYPES, ProxyURL

_LONGEST_ECHOED: Final = 60
"""A hint repeats the value (``write http://VALUE``) only when it is at most this long."""


def _credentials_hint(fld: str, remove: str = "remove them from the URL") -> str:
    """How to give proxy credentials instead: in egress.yaml, a username and a password file."""
    if fld.startswith("proxy."):
        return f"{remove} and set proxy.username and proxy.password_file"
    return (
        f"{remove}; egress.yaml takes them as proxy.username and proxy.password_file (a file), "
        "so the password never sits in a URL"
    )


def parse_proxy_url(
    value: object, fld: str, p: Problems, *, assume_http: bool = False
) -> ProxyURL | None:
    """Parse a proxy URL, refusing every form egress cannot carry out.

    ``assume_http`` reads a value without a scheme as ``http://`` (the environment's habit).
    """
    url = text(value, fld, p)
    if url is None:
        return None
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        p.error(fld, "contains spaces or control characters", "write the URL as http://host:port")
        return None
    if "://" not in url and assume_http:
        url = "http://" + url
    _, user, password, _ = split_userinfo(url if "://" in url else "http://" + url)
    if user is not None or password is not None:
        # shown() masks the password of a URL with a scheme; without one, the value is not shown
        subject = shown(url) if "://" in url else "the value"
        p.error(
            fld,
            f"{subject} has credentials in the URL, where they would leak into logs and "
            "environment variables",
            _credentials_hint(fld),
        )
        return None
    if "://" not in url:
        example = printable(url) if len(url) <= _LONGEST_ECHOED else "host:port"
        p.error(
            fld,
            f"{shown(url)} has no scheme; only http:// and https:// proxies are supported",
            f"write http://{example} or https://{example}",
        )
        return None
    try:
        parts = urlsplit(url)
        number = parts.port
    except ValueError:
        p.error(fld, f"{shown(url)} has an invalid port", "use a port between 1 and 65535")
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        p.error(
            fld,
            f"{shown(url)} uses scheme {scheme[:20] or 'none'}; only http:// and https:// "
            "proxies are supported",
            "write the proxy as http://host:port or https://host:port",
        )
        return None
    host = parts.hostname
    if not host:
        p.error(fld, f"{shown(url)} has no host", "write the proxy as http://host:port")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        p.error(fld, f"{shown(url)} has a path or query", "write only scheme://host:port")
        return None
    if number is not None and not 1 <= number <= 65535:
        p.error(fld, f"{shown(url)} has port {number}", "use a port between 1 and 65535")
        return None
    if not valid_host(host):
        p.error(fld, f"{shown(url)} has an invalid host {shown(host)}", "write a DNS name or an IP")
        return None
    default = 443 if scheme == "https" else 80
    return ProxyURL(scheme, host, number or default, explicit_port=number is not None)  # type: ignore[arg-type]


def proxy_from_parts(m: Mapping[str, Any], prefix: str, p: Problems) -> ProxyURL | None:
    """The ``host`` / ``port`` / ``type`` spelling of a proxy (egress.yaml and the seed chart)."""
    host = text(m.get("host"), f"{prefix}host", p)
    if host is None:
        if m.get("port") not in (None, "") or m.get("type") not in (None, ""):
            p.error(f"{prefix}host", "is missing while port or type is set", "set the proxy host")
        return None
    kind = (text(m.get("type"), f"{prefix}type", p) or "http").lower()
    if kind not in PROXY_TYPES:
        p.error(f"{prefix}type", f"{shown(kind)} is not http or https", "set type: http or https")
        return None
    number = port(m.get("port"), f"{prefix}port", p)
    if "@" in host:
        p.error(
            f"{prefix}host",
            "has credentials in it, where they would leak into logs and environment variables",
            _credentials_hint(f"{prefix}host", f"put only the name in {prefix}host"),
        )
        return None
    if "://" in host:
        p.error(f"{prefix}host", f"{shown(host)} holds a scheme", "put only the name in host")
        return None
    if ":" in host and not is_ipv6(host.strip("[]")):
        p.error(
            f"{prefix}host",
            f"{shown(host)} holds a port",
            f"put only the name in {prefix}host and the port in {prefix}port",
        )
        return None
    host = host.strip("[]")
    netloc = f"[{host}]" if ":" in host else host
    url = f"{kind}://{netloc}" + (f":{number}" if number else "")
    return parse_proxy_url(url, f"{prefix}host", p)
