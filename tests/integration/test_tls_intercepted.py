"""``TLSIntercepted`` through a real Squid doing TLS interception (``ssl_bump bump all``).

What counts as interception (see :mod:`egress.transport.intercept`): inside the proxy's tunnel
the origin's certificate fails verification *and* the presented chain verifies against a CA the
operator added for the proxy (``proxy.ca_file``). The default origin trust includes
``proxy.ca_file`` (the seed platform's ``trustedCACerts`` behaviour), so a client sees the
failure when its origin trust is its own: here ``verify=`` an ``SSLContext`` with the public
roots only (a component that pins the origin trust), the same thing a stricter caller does. An
issuer nobody configured is not called interception: it stays a plain certificate error.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.squid import PROXY_PASSWORD, PROXY_USER, SquidProxy
from tests.support.squid_bump import BumpingSquid, InterceptionCA, interception_ca

import egress
from egress.errors import TLSIntercepted
from egress.settings import Settings, load_settings_from_mapping
from egress.transport.clients import HTTPXTLSIntercepted
from egress.transport.requests_adapter import RequestsTLSIntercepted

HINT = (
    "the proxy intercepts TLS: trust its CA for this destination on purpose (verify=...), "
    f"or ask the proxy team to exempt {names.API_SAAS} from interception"
)


@pytest.fixture(scope="module")
def bump_ca(tmp_path_factory: pytest.TempPathFactory) -> InterceptionCA:
    return interception_ca(tmp_path_factory.mktemp("interception-ca"))


@pytest.fixture(scope="module")
def bumping_squid(
    certs: CertBundle, origin: FakeOrigin, bump_ca: InterceptionCA
) -> Iterator[BumpingSquid]:
    proxy = BumpingSquid(
        bump_ca=bump_ca,
        origin_ca=certs.origin_ca,
        proxy_cert=certs.proxy_cert,
        proxy_key=certs.proxy_key,
        origin_http_port=origin.http_port,
        origin_https_port=origin.https_port,
        pg_port=1,  # no PostgreSQL here; its port must not be the origin's (GET denied there)
    )
    with proxy:
        yield proxy


def settings_for(proxy_url: str, ca_file: Path | None, **proxy: Any) -> Settings:
    section: dict[str, Any] = {"url": proxy_url, **proxy}
    if ca_file is not None:
        section["ca_file"] = str(ca_file)
    return load_settings_from_mapping({"proxy": section}, env={})


def public_roots() -> ssl.SSLContext:
    """An origin trust of the public roots only (OpenSSL's defaults), without proxy.ca_file."""
    return ssl.create_default_context()


def url_of(origin: FakeOrigin, path: str = "/") -> str:
    return f"https://{names.API_SAAS}:{origin.https_port}{path}"


def assert_intercepted(error: TLSIntercepted, proxy_url: str, origin: FakeOrigin) -> None:
    text = str(error)
    assert error.hop == "origin-tls"
    assert error.hint == HINT
    assert error.target == f"{names.API_SAAS}:{origin.https_port}"
    assert error.proxy == proxy_url
    assert f"{names.API_SAAS}:{origin.https_port}" in text
    assert "'OU=interception CA, O=egress tests'" in text  # the issuer seen
    assert "proxy.ca_file" in text
    assert text.endswith(HINT)


def test_client_raises_tls_intercepted(
    bumping_squid: BumpingSquid, origin: FakeOrigin, bump_ca: InterceptionCA
) -> None:
    settings = settings_for(bumping_squid.http_url, bump_ca.cert)
    with (
        egress.Client(settings, verify=public_roots()) as client,
        pytest.raises(HTTPXTLSIntercepted) as caught,
    ):
        client.get(url_of(origin))
    assert isinstance(caught.value, httpx.ConnectError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert_intercepted(caught.value, bumping_squid.http_url, origin)


def test_async_client_raises_tls_intercepted(
    bumping_squid: BumpingSquid, origin: FakeOrigin, bump_ca: InterceptionCA
) -> None:
    settings = settings_for(bumping_squid.http_url, bump_ca.cert)

    async def fetch() -> None:
        async with egress.AsyncClient(settings, verify=public_roots()) as client:
            await client.get(url_of(origin))

    with pytest.raises(HTTPXTLSIntercepted) as caught:
        asyncio.run(fetch())
    assert_intercepted(caught.value, bumping_squid.http_url, origin)


def test_requests_session_raises_tls_intercepted(
    bumping_squid: BumpingSquid, origin: FakeOrigin, bump_ca: InterceptionCA
) -> None:
    settings = settings_for(bumping_squid.http_url, bump_ca.cert)
    with (
        egress.requests_session(settings, verify=public_roots()) as session,
        pytest.raises(RequestsTLSIntercepted) as caught,
    ):
        session.get(url_of(origin), timeout=5)
    assert isinstance(caught.value, requests.exceptions.SSLError)
    assert_intercepted(caught.value, bumping_squid.http_url, origin)


def test_probe_carries_the_proxy_credentials_and_never_shows_them(
    bumping_squid: BumpingSquid, origin: FakeOrigin, bump_ca: InterceptionCA, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PROXY_PASSWORD)
    settings = settings_for(
        bumping_squid.http_auth_url,
        bump_ca.cert,
        username=PROXY_USER,
        password_file=str(password_file),
    )
    for make in (egress.Client, egress.requests_session):
        with (
            make(settings, verify=public_roots()) as client,  # type: ignore[operator]
            pytest.raises(TLSIntercepted) as caught,
        ):
            client.get(url_of(origin), timeout=5)
        # only a CONNECT the proxy accepted (credentials included) shows the interception CA
        assert "'OU=interception CA, O=egress tests'" in str(caught.value)
        assert caught.value.hint == HINT
        assert PROXY_PASSWORD not in repr(caught.value.args)
        assert PROXY_PASSWORD not in str(caught.value.__cause__)


def test_trusting_the_interception_ca_on_purpose_succeeds(
    bumping_squid: BumpingSquid, origin: FakeOrigin, bump_ca: InterceptionCA
) -> None:
    settings = settings_for(bumping_squid.http_url, bump_ca.cert)
    mark = bumping_squid.access_log_mark()
    with egress.Client(settings, verify=bump_ca.cert) as client:
        response = client.get(url_of(origin, "/intercepted-ok"))
    assert response.status_code == 200
    with egress.requests_session(settings, verify=bump_ca.cert) as session:
        assert session.get(url_of(origin, "/intercepted-ok"), timeout=5).status_code == 200
    # Squid decrypted the tunnel: it logs the GET inside it, with the full https URL
    bumped = bumping_squid.wait_for_access_log(
        lambda line: line.method == "GET" and line.url == url_of(origin, "/intercepted-ok"),
        since=mark,
    )
    assert bumped.code == 200


def test_unknown_issuer_is_not_called_interception(
    bumping_squid: BumpingSquid, origin: FakeOrigin, certs: CertBundle
) -> None:
    """No CA configured for the proxy: the bumped certificate is just untrusted."""
    for ca_file in (None, certs.proxy_ca):
        settings = settings_for(bumping_squid.http_url, ca_file)
        with (
            egress.Client(settings, verify=public_roots()) as client,
            pytest.raises(httpx.ConnectError) as caught,
        ):
            client.get(url_of(origin))
        assert not isinstance(caught.value, TLSIntercepted)
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_no_false_positive_without_interception(
    squid: SquidProxy, origin: FakeOrigin, bump_ca: InterceptionCA, certs: CertBundle
) -> None:
    """A Squid that only tunnels: the origin's own certificate, never called interception."""
    settings = settings_for(squid.http_url, bump_ca.cert)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        assert client.get(url_of(origin)).status_code == 200
    with egress.requests_session(settings, verify=certs.origin_ca) as session:
        assert session.get(url_of(origin), timeout=5).status_code == 200
    # an origin certificate this client does not trust stays a plain certificate error
    with (
        egress.Client(settings, verify=public_roots()) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.get(url_of(origin))
    assert not isinstance(caught.value, TLSIntercepted)
    with (
        egress.requests_session(settings, verify=public_roots()) as session,
        pytest.raises(requests.exceptions.SSLError) as failed,
    ):
        session.get(url_of(origin), timeout=5)
    assert not isinstance(failed.value, TLSIntercepted)


# -- egress check: the tls-intercepted status -----------------------------------------------------


def test_check_reports_interception_even_when_the_ca_is_trusted(
    bumping_squid: BumpingSquid, origin: FakeOrigin, bump_ca: InterceptionCA, certs: CertBundle
) -> None:
    """With the interception CA in proxy.ca_file the request works (egress trusts it for
    origins too), but the preflight still says the proxy intercepts: a warning, not a failure."""
    from egress.check import Probe, exit_code, run_checks

    settings = settings_for(bumping_squid.http_url, bump_ca.cert)
    (result,) = run_checks(settings, [Probe(url_of(origin, "/check"), required=True)], timeout=5)
    assert result.status == "tls-intercepted", result
    assert result.reachable
    assert "OU=interception CA" in result.detail and "HTTP 200" in result.detail
    assert f"exempt {names.API_SAAS} from interception" in result.fix
    assert exit_code([result]) == 0, "reachable through the proxy: a warning only"


def test_check_fails_an_intercepted_destination_it_cannot_reach(
    bumping_squid: BumpingSquid, origin: FakeOrigin, bump_ca: InterceptionCA
) -> None:
    from egress.check import Probe, exit_code, run_checks

    settings = settings_for(bumping_squid.http_url, bump_ca.cert)
    (result,) = run_checks(
        settings,
        [Probe(url_of(origin, "/check"), required=True)],
        timeout=5,
        verify=public_roots(),
    )
    assert result.status == "tls-intercepted", result
    assert not result.reachable
    assert exit_code([result]) == 1


def test_check_sees_no_interception_through_a_plain_squid(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    """The proxy CA in ca_file, but the origin presents its own certificate: plain ok."""
    from egress.check import Probe, run_checks

    settings = settings_for(squid.http_url, certs.proxy_ca)
    (result,) = run_checks(
        settings,
        [Probe(url_of(origin, "/check"), required=True)],
        timeout=5,
        verify=certs.origin_ca,
    )
    assert result.status == "ok", result
