"""Session-wide services for integration tests: test CAs, fake origin, PostgreSQL, Squid.

All listen on free 127.0.0.1 ports; each is stopped by PID at the end of the session. A
missing binary is a failure (run ``scripts/install-system-deps.sh``), never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.certs import CertBundle, generate_certs
from tests.support.origin import FakeOrigin
from tests.support.postgres import PostgresServer
from tests.support.squid import SquidProxy


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    """Origin CA, proxy CA and a wrong CA, with leaves, as PEM files."""
    return generate_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def origin(certs: CertBundle) -> Iterator[FakeOrigin]:
    """The fake SaaS origin (HTTPS + HTTP) running in this process."""
    with FakeOrigin(certs.origin_cert, certs.origin_key) as server:
        yield server


@pytest.fixture(scope="session")
def postgres(certs: CertBundle) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL with TLS (origin CA leaf) on a free loopback port."""
    with PostgresServer(cert_file=certs.origin_cert, key_file=certs.origin_key) as server:
        yield server


def _squid_for(certs: CertBundle, origin: FakeOrigin, postgres: PostgresServer) -> SquidProxy:
    """Squid with plain, TLS, plain+auth and TLS+auth listeners, allowing the origin's ports
    and the PostgreSQL port (CONNECT only). Not started."""
    return SquidProxy(
        proxy_cert=certs.proxy_cert,
        proxy_key=certs.proxy_key,
        origin_http_port=origin.http_port,
        origin_https_port=origin.https_port,
        pg_port=postgres.port,
    )


@pytest.fixture(scope="session")
def squid(certs: CertBundle, origin: FakeOrigin, postgres: PostgresServer) -> Iterator[SquidProxy]:
    """The session's Squid (see ``_squid_for``), started."""
    with _squid_for(certs, origin, postgres) as proxy:
        yield proxy


@pytest.fixture
def own_squid(
    certs: CertBundle, origin: FakeOrigin, postgres: PostgresServer
) -> Iterator[SquidProxy]:
    """A Squid of the test's own, not started, for tests that stop and start it; closed (by
    PID) and removed afterwards."""
    proxy = _squid_for(certs, origin, postgres)
    try:
        yield proxy
    finally:
        proxy.close()
