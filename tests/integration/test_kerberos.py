"""Kerberos (Negotiate) to the proxy, against a real MIT KDC and Squid's negotiate_kerberos_auth.

Each test gets its own credential cache (``kinit`` from alice's keytab) through ``KRB5CCNAME``;
every Kerberos process reads the test realm's ``KRB5_CONFIG``. Squid's access log names the
principal a connection authenticated as.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.kerberos import CLIENT, CLIENT_PRINCIPAL, KDC, NegotiateSquid
from tests.support.origin import FakeOrigin
from tests.support.postgres import PostgresServer
from tests.support.squid import AccessLogLine

import egress
from egress import ProxyAuthRequired
from egress.check import Probe, run_checks
from egress.settings import Settings, load_settings_from_mapping
from egress.transport.plan import Planner
from egress.tunnel import open_upstream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kdc() -> Iterator[KDC]:
    with KDC() as server:
        yield server


@pytest.fixture(scope="module")
def ksquid(
    kdc: KDC, certs: CertBundle, origin: FakeOrigin, postgres: PostgresServer
) -> Iterator[NegotiateSquid]:
    with NegotiateSquid(
        kdc,
        proxy_cert=certs.proxy_cert,
        proxy_key=certs.proxy_key,
        origin_http_port=origin.http_port,
        origin_https_port=origin.https_port,
        pg_port=postgres.port,
    ) as proxy:
        yield proxy


@pytest.fixture
def ccache(kdc: KDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ticket for alice in this test's own credential cache."""
    for key, value in kdc.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KRB5_CLIENT_KTNAME", raising=False)
    cache = tmp_path / "ccache"
    kdc.kinit(cache)
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{cache}")
    return cache


def negotiate(url: str, **kerberos: str) -> Settings:
    proxy: dict[str, Any] = {"url": url, "auth": "negotiate"}
    if kerberos:
        proxy["kerberos"] = kerberos
    return load_settings_from_mapping({"proxy": proxy}, env={})


def unique(tag: str) -> str:
    return f"/{tag}-{uuid.uuid4().hex[:10]}"


def lines_with(squid: NegotiateSquid, mark: int, path: str) -> list[AccessLogLine]:
    return [line for line in squid.access_log_lines(since=mark) if path in line.url]


def test_connect_and_plain_http_authenticate_as_the_principal(
    ksquid: NegotiateSquid, origin: FakeOrigin, certs: CertBundle, ccache: Path
) -> None:
    mark = ksquid.access_log_mark()
    plain = unique("krb-plain")
    with egress.Client(negotiate(ksquid.negotiate_url), verify=certs.origin_ca) as client:
        tunnelled = client.get(origin.url(names.API_SAAS, "/krb-tls")).json()
        answer = client.get(origin.url(names.API_SAAS, plain, tls=False))
        again = client.get(origin.url(names.API_SAAS, plain + "-again", tls=False))
    assert tunnelled["sni"] == names.API_SAAS
    assert answer.status_code == again.status_code == 200
    line = ksquid.wait_for_access_log(lambda e: plain in e.url, since=mark)
    assert (line.status, line.user) == ("TCP_MISS/200", CLIENT_PRINCIPAL)
    connect = ksquid.wait_for_access_log(lambda e: e.method == "CONNECT", since=mark)
    assert connect.user == CLIENT_PRINCIPAL and connect.status == "TCP_TUNNEL/200"
    denied = [e for e in ksquid.access_log_lines(since=mark) if e.status.endswith("/407")]
    assert denied == []  # the token went out first: one round trip, no challenge


def test_async_client_authenticates(
    ksquid: NegotiateSquid, origin: FakeOrigin, certs: CertBundle, ccache: Path
) -> None:
    mark = ksquid.access_log_mark()
    path = unique("krb-async")

    async def run() -> tuple[int, int]:
        settings = negotiate(ksquid.negotiate_url)
        async with egress.AsyncClient(settings, verify=certs.origin_ca) as client:
            a = await client.get(origin.url(names.API_SAAS, path, tls=False))
            b = await client.get(origin.url(names.API_SAAS, path + "-tls"))
            return a.status_code, b.status_code

    assert asyncio.run(run()) == (200, 200)
    line = ksquid.wait_for_access_log(lambda e: path in e.url, since=mark)
    assert line.user == CLIENT_PRINCIPAL


def test_twenty_parallel_tunnels_each_with_its_own_token(
    ksquid: NegotiateSquid, origin: FakeOrigin, certs: CertBundle, ccache: Path
) -> None:
    settings = negotiate(ksquid.negotiate_url)
    planner = Planner(settings)
    sent: list[str] = []
    lock = threading.Lock()
    negotiator = planner.negotiator(settings.proxy.https_proxy)
    assert negotiator is not None
    real = negotiator.header

    def recording() -> str:
        value = real()
        with lock:
            sent.append(value)
        return value

    negotiator.header = recording  # type: ignore[method-assign]
    mark = ksquid.access_log_mark()
    decision = settings.router().decide(f"tcp://{names.PG_HOST}:{ksquid.pg_port}")
    barrier = threading.Barrier(20)

    def one(_: int) -> bytes:
        barrier.wait(timeout=10)
        sock, first = open_upstream(decision, planner, timeout=10)
        try:
            return first
        finally:
            sock.close()

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(one, range(20)))
    assert len(sent) == len(set(sent)) == 20
    tunnels = ksquid.wait_for_access_log(lambda e: e.method == "CONNECT", since=mark)
    assert tunnels.user == CLIENT_PRINCIPAL
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ok = [
            e
            for e in ksquid.access_log_lines(since=mark)
            if e.method == "CONNECT" and e.user == CLIENT_PRINCIPAL
        ]
        if len(ok) >= 20:
            break
        time.sleep(0.1)
    assert len(ok) == 20
    assert not [e for e in ksquid.access_log_lines(since=mark) if e.status.endswith("/407")]


def test_a_keytab_alone_is_the_identity(
    kdc: KDC,
    ksquid: NegotiateSquid,
    origin: FakeOrigin,
    certs: CertBundle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in kdc.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path}/no-such-cache")  # no ticket anywhere
    settings = negotiate(ksquid.negotiate_url, keytab=str(kdc.client_keytab), principal=CLIENT)
    path = unique("krb-keytab")
    mark = ksquid.access_log_mark()
    with egress.Client(settings, verify=certs.origin_ca) as client:
        assert client.get(origin.url(names.API_SAAS, path, tls=False)).status_code == 200
    assert ksquid.wait_for_access_log(lambda e: path in e.url, since=mark).user == CLIENT_PRINCIPAL
    assert not Path(f"{tmp_path}/no-such-cache").exists()  # its tickets stay in memory


def test_an_expired_ticket_is_renewed_from_the_keytab(
    kdc: KDC,
    ksquid: NegotiateSquid,
    origin: FakeOrigin,
    certs: CertBundle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in kdc.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path}/none")
    kdc.kadmin("modprinc -maxlife 3s alice")
    try:
        settings = negotiate(ksquid.negotiate_url, keytab=str(kdc.client_keytab), principal=CLIENT)
        planner = Planner(settings)
        negotiator = planner.negotiator(settings.proxy.http_proxy)
        assert negotiator is not None
        negotiator.token()
        first = negotiator._creds
        time.sleep(4)  # the 3-second ticket has expired
        mark = ksquid.access_log_mark()
        path = unique("krb-renewed")
        with egress.Client(settings, verify=certs.origin_ca) as client:
            client.egress_transport._planner = planner
            assert client.get(origin.url(names.API_SAAS, path, tls=False)).status_code == 200
        assert negotiator._creds is not first  # new credentials from the keytab
        line = ksquid.wait_for_access_log(lambda e: path in e.url, since=mark)
        assert line.user == CLIENT_PRINCIPAL
    finally:
        kdc.kadmin("modprinc -maxlife 10h alice")


@pytest.mark.parametrize("tls", [True, False], ids=["connect", "plain"])
def test_no_ticket_is_an_auth_error_with_the_fix(
    ksquid: NegotiateSquid,
    origin: FakeOrigin,
    certs: CertBundle,
    ccache: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls: bool,
) -> None:
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}.missing")
    mark = ksquid.access_log_mark()
    with (
        egress.Client(negotiate(ksquid.negotiate_url), verify=certs.origin_ca) as client,
        pytest.raises(ProxyAuthRequired) as exc,
    ):
        client.get(origin.url(names.API_SAAS, unique("krb-none"), tls=tls))
    text = str(exc.value)
    assert "no Kerberos ticket" in text and "kinit" in text, text
    assert exc.value.hop == ("proxy-connect" if tls else "proxy-request")
    assert not [e for e in ksquid.access_log_lines(since=mark) if "krb-none" in e.url]


def test_an_expired_ticket_says_so(
    kdc: KDC,
    ksquid: NegotiateSquid,
    origin: FakeOrigin,
    certs: CertBundle,
    ccache: Path,
) -> None:
    kdc.kinit(ccache, lifetime="2s")
    time.sleep(3)
    with (
        egress.Client(negotiate(ksquid.negotiate_url), verify=certs.origin_ca) as client,
        pytest.raises(ProxyAuthRequired, match="has expired") as exc,
    ):
        client.get(origin.url(names.API_SAAS, "/krb-expired"))
    assert "kinit" in exc.value.hint


def test_an_spn_the_kdc_does_not_know(
    ksquid: NegotiateSquid, origin: FakeOrigin, certs: CertBundle, ccache: Path
) -> None:
    settings = negotiate(ksquid.negotiate_url, spn="HTTP/proxy.invalid")
    with (
        egress.Client(settings, verify=certs.origin_ca) as client,
        pytest.raises(ProxyAuthRequired, match="does not know the proxy's service principal"),
    ):
        client.get(origin.url(names.API_SAAS, "/krb-spn"))


def test_the_proxy_refusing_the_token_points_at_its_cache_log(
    kdc: KDC, ksquid: NegotiateSquid, origin: FakeOrigin, certs: CertBundle, ccache: Path
) -> None:
    # a service principal the KDC knows but the proxy's keytab lacks: the proxy refuses
    kdc.kadmin("addprinc -randkey HTTP/other.localhost")
    settings = negotiate(ksquid.negotiate_url, spn="HTTP/other.localhost")
    for tls in (True, False):
        with (
            egress.Client(settings, verify=certs.origin_ca) as client,
            pytest.raises(ProxyAuthRequired) as exc,
        ):
            client.get(origin.url(names.API_SAAS, "/krb-refused", tls=tls))
        assert exc.value.status == 407
        assert "refused the Kerberos (Negotiate) token" in str(exc.value)
        assert "cache.log" in exc.value.hint and "clock" in exc.value.hint


def test_requests_adapter_authenticates(
    ksquid: NegotiateSquid, origin: FakeOrigin, certs: CertBundle, ccache: Path
) -> None:
    mark = ksquid.access_log_mark()
    path = unique("krb-requests")
    settings = negotiate(ksquid.negotiate_url)
    with egress.requests_session(settings, verify=certs.origin_ca) as session:
        for tls in (True, False, False):
            answer = session.get(
                origin.url(names.API_SAAS, path + ("-tls" if tls else ""), tls=tls), timeout=10
            )
            assert answer.status_code == 200
    line = ksquid.wait_for_access_log(lambda e: path in e.url and e.method == "GET", since=mark)
    assert line.user == CLIENT_PRINCIPAL
    connect = ksquid.wait_for_access_log(lambda e: e.method == "CONNECT", since=mark)
    assert connect.user == CLIENT_PRINCIPAL


def test_tunnel_authenticates_each_connection(
    ksquid: NegotiateSquid, postgres: PostgresServer, ccache: Path
) -> None:
    settings = negotiate(ksquid.negotiate_url)
    planner = Planner(settings)
    decision = settings.router().decide(f"tcp://{names.PG_HOST}:{postgres.port}")
    mark = ksquid.access_log_mark()
    for _ in range(2):
        sock, _first = open_upstream(decision, planner, timeout=10)
        assert isinstance(sock, socket.socket)
        sock.close()
    line = ksquid.wait_for_access_log(lambda e: e.method == "CONNECT", since=mark)
    assert line.user == CLIENT_PRINCIPAL


def test_check_reports_proxy_auth_required_with_the_kerberos_cause(
    ksquid: NegotiateSquid,
    origin: FakeOrigin,
    certs: CertBundle,
    ccache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = negotiate(ksquid.negotiate_url)
    url = origin.url(names.API_SAAS, "/krb-check")
    (ok,) = run_checks(settings, [Probe(url)], timeout=5, verify=certs.origin_ca)
    assert ok.status == "ok", ok
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}.gone")
    (result,) = run_checks(settings, [Probe(url)], timeout=5, verify=certs.origin_ca)
    assert result.status == "proxy-auth-required"
    assert "no Kerberos ticket" in result.detail and "kinit" in result.fix


def test_requests_adapter_without_a_ticket(
    ksquid: NegotiateSquid,
    origin: FakeOrigin,
    certs: CertBundle,
    ccache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}.gone")
    settings = negotiate(ksquid.negotiate_url)
    for tls in (True, False):
        with (
            egress.requests_session(settings, verify=certs.origin_ca) as session,
            pytest.raises(ProxyAuthRequired, match="no Kerberos ticket"),
        ):
            session.get(origin.url(names.API_SAAS, "/krb-requests-none", tls=tls), timeout=5)


def test_tunnel_without_a_ticket(
    ksquid: NegotiateSquid, postgres: PostgresServer, ccache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}.gone")
    settings = negotiate(ksquid.negotiate_url)
    decision = settings.router().decide(f"tcp://{names.PG_HOST}:{postgres.port}")
    with pytest.raises(ProxyAuthRequired, match="no Kerberos ticket") as exc:
        open_upstream(decision, Planner(settings), timeout=10)
    assert exc.value.hop == "proxy-connect"


def test_validate_checks_the_credential_cache(
    kdc: KDC,
    ksquid: NegotiateSquid,
    ccache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from egress import cli

    config = tmp_path / "egress.yaml"
    config.write_text(f"proxy: {{url: '{ksquid.negotiate_url}', auth: negotiate}}\n")
    assert cli.main(["validate", "--config", str(config)]) == 0
    assert "Kerberos" not in capsys.readouterr().out
    kdc.kinit(ccache, lifetime="1s")
    time.sleep(2)
    assert cli.main(["validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "proxy.auth: the Kerberos ticket in the credential cache has expired" in out, out


def test_an_https_proxy_gets_its_tls_first_then_the_token(
    ksquid: NegotiateSquid, origin: FakeOrigin, certs: CertBundle, ccache: Path
) -> None:
    url = f"https://localhost:{ksquid.https_auth_port}"
    settings = load_settings_from_mapping(
        {"proxy": {"url": url, "auth": "negotiate", "ca_file": str(certs.proxy_ca)}}, env={}
    )
    mark = ksquid.access_log_mark()
    path = unique("krb-tls-proxy")
    with egress.Client(settings, verify=certs.origin_ca) as client:
        assert client.get(origin.url(names.API_SAAS, path)).status_code == 200
        assert client.get(origin.url(names.API_SAAS, path, tls=False)).status_code == 200
    line = ksquid.wait_for_access_log(lambda e: path in e.url, since=mark)
    assert (line.user, line.port) == (CLIENT_PRINCIPAL, ksquid.https_auth_port)
    wrong = load_settings_from_mapping(
        {"proxy": {"url": url, "auth": "negotiate", "ca_file": str(certs.wrong_ca)}}, env={}
    )
    with (
        egress.Client(wrong, verify=certs.origin_ca) as client,
        pytest.raises(egress.ProxyTLSError),
    ):
        client.get(origin.url(names.API_SAAS, path))
