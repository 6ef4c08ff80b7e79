"""Hand-made preflight results for the report tests: data, as ``egress check`` would produce it.

Routes, rules and reasons come from the router (as the probe takes them); statuses, details and
fixes are written out the way the probe words them.
"""

from __future__ import annotations

from pathlib import Path

from egress.check import CheckResult, Status
from egress.settings import Settings
from egress.settings.egress_yaml import load_settings_from_mapping

PROXY_PASSWORD = "Hunter2:/@Secret"
"""The proxy password of :func:`sample_settings`: it must never appear in a page."""


def sample_settings(tmp_path: Path) -> Settings:
    """Settings with an authenticated proxy (password in a file), exclusions and a feature."""
    password_file = tmp_path / "proxy-password"
    password_file.write_text(PROXY_PASSWORD + "\n")
    password_file.chmod(0o600)
    raw = {
        "proxy": {
            "enabled": True,
            "url": "http://proxy.corp.example:3128",
            "username": "alice",
            "password_file": str(password_file),
        },
        "excluded_domains": [".corp.example", "10.0.0.0/8"],
        "features": ["core", "geocoding-tomtom"],
    }
    return load_settings_from_mapping(raw, source="egress.yaml")


def result(
    settings: Settings,
    url: str,
    status: Status,
    *,
    detail: str = "",
    fix: str = "",
    required: bool = True,
    purpose: str = "",
    feature: str = "core",
    elapsed_ms: float = 42.0,
) -> CheckResult:
    """One result for ``url``, routed by the settings' router."""
    decision = settings.router().decide(url)
    target = decision.target
    port = target.port if target.port is not None else (443 if url.startswith("https") else 80)
    return CheckResult(
        url=decision.url,
        host=str(target.host),
        port=port,
        route=decision.route,
        rule=decision.rule,
        reason=decision.reason,
        status=status,
        detail=detail,
        fix=fix,
        elapsed_ms=elapsed_ms,
        required=required,
        purpose=purpose,
        feature=feature,
    )


def sample_results(settings: Settings) -> list[CheckResult]:
    """A mixed run: passes, required failures, an optional warning, direct and proxied."""
    return [
        result(settings, "https://auth.carto.com/", "ok", detail="HEAD answered 200"),
        result(
            settings,
            "https://registry-1.docker.io/",
            "proxy-denied",
            detail="proxy.corp.example:3128 refused CONNECT to registry-1.docker.io:443 (403)",
            fix="ask the proxy team to allow registry-1.docker.io:443",
            purpose="Docker Hub registry",
            elapsed_ms=31.5,
        ),
        result(
            settings,
            "https://storage.googleapis.com/",
            "tls-intercepted",
            detail="the certificate of storage.googleapis.com was issued by Corp Inspection CA",
            fix="trust the proxy's CA for imports (ca_file) or exempt storage.googleapis.com",
            elapsed_ms=120.0,
        ),
        result(
            settings,
            "https://api.tomtom.com/",
            "timeout",
            detail="no answer from the origin through the proxy within 5 s",
            fix="ask the proxy team why api.tomtom.com:443 does not answer",
            required=False,
            feature="geocoding-tomtom",
            purpose="TomTom geocoding",
            elapsed_ms=5001.0,
        ),
        result(
            settings,
            "https://db.corp.example:5432/",
            "connect-refused",
            detail="db.corp.example:5432 refused the connection",
            fix="open direct egress to db.corp.example:5432 (NetworkPolicy / firewall)",
            feature="",
            purpose="the platform's PostgreSQL",
            elapsed_ms=3.2,
        ),
        result(
            settings,
            "https://reports.example.net/",
            "ok",
            detail="HEAD answered 301",
            required=False,
            feature="",
            elapsed_ms=88.0,
        ),
    ]
