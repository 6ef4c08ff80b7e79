"""The check's pieces that need no service: scope, the endpoints field, the result model, the
SSLRequest bytes, the exit rule, and the run's own deadline on a check that never returns."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from egress.check import (
    SSL_REQUEST,
    STATUSES,
    CheckResult,
    Probe,
    exit_code,
    failed,
    probes_for,
    run_checks,
)
from egress.errors import ConfigError
from egress.settings import Settings, load_settings_from_mapping


def result(status: str, required: bool) -> CheckResult:
    return CheckResult(
        url="https://x/", host="x", port=443, route="proxy", rule="default", reason="r",
        status=status, detail="d", fix="f", elapsed_ms=1.0, required=required,  # type: ignore[arg-type]
    )  # fmt: skip


def test_ssl_request_is_length_8_and_code_80877103() -> None:
    assert struct.unpack("!II", SSL_REQUEST) == (8, 80877103)


def test_as_dict_is_the_stable_json_form() -> None:
    assert list(result("ok", True).as_dict()) == [
        "url", "host", "port", "route", "rule", "status", "detail", "fix", "elapsed_ms", "required"
    ]  # fmt: skip
    assert len(STATUSES) == 10


def test_required_failures_fail_the_run_optional_ones_warn() -> None:
    ok, opt_bad, req_bad = result("ok", True), result("timeout", False), result("dns-failed", True)
    assert exit_code([ok, opt_bad]) == 0
    assert exit_code([ok, opt_bad, req_bad]) == 1
    assert failed([ok, opt_bad, req_bad]) == ([req_bad], [opt_bad])


def test_endpoints_are_validated_with_field_and_hint() -> None:
    s = load_settings_from_mapping({"endpoints": ["postgresql://db.corp.example:5432"]}, env={})
    assert s.endpoints == ("postgresql://db.corp.example:5432",)
    with pytest.raises(ConfigError) as excinfo:
        load_settings_from_mapping({"endpoints": ["db.corp.example"]}, env={})
    (problem,) = excinfo.value.problems
    assert problem.field == "endpoints[0]" and "postgresql://" in problem.hint
    with pytest.raises(ConfigError) as excinfo:
        load_settings_from_mapping({"endpoints": ["https://.corp.example/"]}, env={})
    assert excinfo.value.problems[0].field == "endpoints[0]"


def test_scope_skips_wildcards_and_adds_endpoints_and_urls() -> None:
    s = load_settings_from_mapping(
        {"endpoints": ["https://vault.corp.example/health"], "warehouses": ["snowflake"]}, env={}
    )
    probes = probes_for(s, None, ["https://extra.corp.example/"])
    urls = [p.url for p in probes]
    assert urls[-2:] == ["https://vault.corp.example/health", "https://extra.corp.example/"]
    assert not any("*" in u or "snowflakecomputing" in u for u in urls)
    assert any(p.feature == "core" and p.required for p in probes)


def test_a_silent_server_is_a_timeout_within_about_one_timeout() -> None:
    """A loopback listener nobody serves (the kernel accepts, nothing answers the ClientHello):
    with timeout 0.5 s the check is a ``timeout`` well within a second."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        start = time.monotonic()
        (r,) = run_checks(Settings(), [Probe(f"https://127.0.0.1:{port}/")], timeout=0.5)
        took = time.monotonic() - start
    finally:
        server.close()
    assert r.status == "timeout" and r.route == "direct"
    assert "0.5 s" in r.detail
    assert took < 1.5
    assert threading.active_count() < 40
