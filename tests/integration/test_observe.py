"""Decisions observable through the real Squid: one DEBUG record per decision on
``egress.decision``, one WARNING per failed hop, and Prometheus metrics parsed with
prometheus_client's own parser."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.squid import SquidProxy

import egress
from egress import observe
from egress.errors import ProxyDenied
from egress.settings import Settings, load_settings_from_mapping
from egress.tunnel import Tunnel

pytestmark = pytest.mark.integration


def settings_for(squid: SquidProxy) -> Settings:
    """Proxied by default; the excluded name goes direct to the origin (resolved to loopback)."""
    return load_settings_from_mapping(
        {
            "proxy": {"enabled": True, "url": squid.http_url},
            "excluded_domains": [names.EXCLUDED_CORP],
            "resolve": {names.EXCLUDED_CORP: "127.0.0.1"},
        },
        env={},
    )


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """Metrics of this test only, in a registry of its own."""
    reg = CollectorRegistry()
    assert observe.enable_metrics(reg)
    try:
        yield reg
    finally:
        observe.disable_metrics()


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``registry``, through the Prometheus text format and its parser."""
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def one(
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The value of the sample ``name`` with exactly ``labels``."""
    return got[(name, tuple(sorted(labels.items())))]


def decision_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "egress.decision"]


def test_one_debug_record_per_decision_proxy_and_direct(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="egress.decision")
    with egress.Client(settings_for(squid), verify=certs.origin_ca) as client:
        assert client.get(origin.url(names.API_SAAS, "/a?token=s3cret")).status_code == 200
        assert client.get(origin.url(names.EXCLUDED_CORP, "/b")).status_code == 200
    proxied, direct = decision_records(caplog)
    assert (proxied.levelno, direct.levelno) == (logging.DEBUG, logging.DEBUG)
    assert (proxied.route, proxied.rule, proxied.host, proxied.port, proxied.proxy) == (  # type: ignore[attr-defined]
        "proxy",
        "default",
        names.API_SAAS,
        origin.https_port,
        squid.http_url,
    )
    assert (direct.route, direct.host, direct.proxy) == ("direct", names.EXCLUDED_CORP, None)  # type: ignore[attr-defined]
    assert direct.rule.startswith("excluded:")  # type: ignore[attr-defined]
    message = proxied.getMessage()
    assert names.API_SAAS in message and "proxy" in message
    assert "s3cret" not in message and "/a" not in message  # no path, no query


def test_no_record_unless_the_logger_is_on_for_debug(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="egress.decision")
    with egress.Client(settings_for(squid), verify=certs.origin_ca) as client:
        assert client.get(origin.url(names.API_SAAS, "/quiet")).status_code == 200
    assert decision_records(caplog) == []


def test_a_403_from_squid_is_one_warning_with_its_kind_and_counted(
    squid: SquidProxy,
    origin: FakeOrigin,
    certs: CertBundle,
    caplog: pytest.LogCaptureFixture,
    registry: CollectorRegistry,
) -> None:
    caplog.set_level(logging.WARNING, logger="egress.decision")
    with (
        egress.Client(settings_for(squid), verify=certs.origin_ca) as client,
        pytest.raises(ProxyDenied),
    ):
        client.get(origin.url(names.BLOCKED, "/denied"))
    (record,) = decision_records(caplog)
    assert record.levelno == logging.WARNING
    assert (record.kind, record.hop, record.host) == ("denied", "proxy-connect", names.BLOCKED)  # type: ignore[attr-defined]
    assert "403" in record.getMessage() and "ask the proxy team" in record.getMessage()
    got = samples(registry)
    assert one(got, "egress_request_failures_total", kind="denied", route="proxy") == 1
    assert one(got, "egress_decisions_total", route="proxy", rule="default") == 1


def test_metrics_count_decisions_requests_and_failures_by_kind(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, registry: CollectorRegistry
) -> None:
    settings = settings_for(squid)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        for _ in range(3):
            assert client.get(origin.url(names.API_SAAS, "/m")).status_code == 200
        assert client.get(origin.url(names.EXCLUDED_CORP, "/m")).status_code == 200
    with egress.requests_session(settings, verify=str(certs.origin_ca)) as session:
        assert session.get(origin.url(names.API_SAAS, "/r"), timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.ProxyError):
            session.get(origin.url(names.BLOCKED, "/r"), timeout=10)
    got = samples(registry)
    rule = next(
        r
        for (n, labels), _ in got.items()
        for k, r in labels
        if k == "rule" and r != "default" and n == "egress_decisions_total"
    )
    assert rule.startswith("excluded:")
    assert one(got, "egress_decisions_total", route="proxy", rule="default") == 5
    assert one(got, "egress_decisions_total", route="direct", rule=rule) == 1
    assert one(got, "egress_requests_total", route="proxy") == 5
    assert one(got, "egress_request_failures_total", kind="denied", route="proxy") == 1
    # hosts are never labels
    assert not any(names.API_SAAS in v for (_, labels) in got for _, v in labels)


def test_settings_version_and_reloads(registry: CollectorRegistry) -> None:
    observe.settings_loaded("file", "file:1:10")
    observe.settings_loaded("file", "file:2:12")
    observe.settings_rejected("file", "broken yaml")
    got = samples(registry)
    assert one(got, "egress_settings_version_info", source="file", version="file:2:12") == 1
    assert (
        "egress_settings_version_info",
        (("source", "file"), ("version", "file:1:10")),
    ) not in got
    assert one(got, "egress_settings_reloads_total", outcome="loaded", source="file") == 2
    assert one(got, "egress_settings_reloads_total", outcome="rejected", source="file") == 1


def test_tunnel_bytes_and_connections(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, registry: CollectorRegistry
) -> None:
    settings = settings_for(squid)
    target = f"{names.API_SAAS}:{origin.https_port}"
    with Tunnel(settings, target) as tunnel:
        ctx = ssl.create_default_context(cafile=str(certs.origin_ca))
        with (
            socket.create_connection((tunnel.host, tunnel.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=names.API_SAAS) as tls,
        ):
            tls.sendall(
                f"GET /t HTTP/1.1\r\nHost: {names.API_SAAS}\r\nConnection: close\r\n\r\n".encode()
            )
            body = b""
            while chunk := tls.recv(65536):
                body += chunk
        assert body.startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while tunnel.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)
    got = samples(registry)
    assert one(got, "egress_tunnel_connections_total") == 1
    assert one(got, "egress_tunnel_connections_open") == 0
    assert one(got, "egress_tunnel_bytes_total", direction="up") > 50
    assert one(got, "egress_tunnel_bytes_total", direction="down") >= len(body)
