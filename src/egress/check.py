"""Preflight: every destination in scope, probed along the route the router decides.

(Being built for issue 9: this module holds the result model that the probe, the CLI and the
HTML report share.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal[
    "ok",
    "proxy-unreachable",
    "proxy-auth-required",
    "proxy-denied",
    "proxy-tls-untrusted",
    "tls-intercepted",
    "dns-failed",
    "connect-refused",
    "timeout",
    "origin-error",
]
STATUSES: tuple[Status, ...] = (
    "ok",
    "proxy-unreachable",
    "proxy-auth-required",
    "proxy-denied",
    "proxy-tls-untrusted",
    "tls-intercepted",
    "dns-failed",
    "connect-refused",
    "timeout",
    "origin-error",
)


@dataclass(frozen=True)
class CheckResult:
    """One destination's preflight: where it went, what happened, and the one-line fix.

    ``as_dict`` is the stable ``--json`` form: url, host, port, route, rule, status, detail, fix,
    elapsed_ms, required.
    """

    url: str
    host: str
    port: int
    route: str
    rule: str
    reason: str
    status: Status
    detail: str
    fix: str
    elapsed_ms: float
    required: bool
    purpose: str = ""
    feature: str = ""

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        for extra in ("reason", "purpose", "feature"):
            out.pop(extra)
        return out
