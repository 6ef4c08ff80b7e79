"""Guards for every test: a clean proxy/TLS environment and no real name resolution."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

#: Removed from the environment for every test (both spellings where tools read both).
CLEARED_ENV_VARS: tuple[str, ...] = (
    *(
        spelling
        for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy")
        for spelling in (name.upper(), name)
    ),
    "REQUEST_METHOD",  # set under CGI; makes urllib/requests ignore HTTP_PROXY
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture(autouse=True)
def _clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without proxy or CA-bundle settings inherited from the shell."""
    for name in CLEARED_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def is_loopback_host(host: Any) -> bool:
    """True for hosts a test may resolve: ``localhost``, 127.0.0.0/8 and ::1 literals.

    >>> [is_loopback_host(h) for h in ("localhost", "127.0.0.2", "::1", "10.0.0.1", "x.test")]
    [True, True, True, False, False]
    """
    if host is None:
        return True  # getaddrinfo(None, port): the passive/loopback address, no lookup
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip().rstrip(".").lower()
    if name in ("", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class NameResolutionBlocked(socket.gaierror):
    """Raised by the test guard instead of resolving a non-loopback name."""


def _refuse(host: Any) -> NameResolutionBlocked:
    return NameResolutionBlocked(
        socket.EAI_NONAME,
        f"test guard: refusing to resolve {host!r}; tests only talk to loopback "
        "(send fake names through Squid, which resolves them from its hosts_file)",
    )


@pytest.fixture(autouse=True, scope="session")
def _loopback_only_resolver() -> Iterator[None]:
    """For the whole session, ``socket.getaddrinfo`` (and ``gethostbyname*``) refuse any host
    that is not loopback, so no test or fixture can look a name up in the machine's DNS."""
    real_getaddrinfo = socket.getaddrinfo
    real_gethostbyname = socket.gethostbyname
    real_gethostbyname_ex = socket.gethostbyname_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_loopback_host(host):
            raise _refuse(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host: str) -> str:
        if not is_loopback_host(host):
            raise _refuse(host)
        return real_gethostbyname(host)

    def gethostbyname_ex(host: str) -> tuple[str, list[str], list[str]]:
        if not is_loopback_host(host):
            raise _refuse(host)
        return real_gethostbyname_ex(host)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket, "gethostbyname", gethostbyname)
        patch.setattr(socket, "gethostbyname_ex", gethostbyname_ex)
        yield
