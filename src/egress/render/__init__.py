"""Rendered artifacts: each one agrees with the router, because each one asks it.

Every renderer is ``render(settings, options) -> Artifact``; ``egress render KIND`` prints
``Artifact.text`` on stdout and each of ``Artifact.warnings`` on stderr.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from egress.settings import Settings


@dataclass(frozen=True)
class RenderOptions:
    """What the command line can add to the settings for one artifact."""

    format: str | None = None
    """env: dotenv | configmap | secret."""
    proxy_cidr: str | None = None
    """networkpolicy: where the proxy is, when the settings name it by host name."""
    warehouse_cidrs: tuple[tuple[str, str], ...] = ()
    """networkpolicy: (warehouse kind, CIDR) pairs that direct routes may reach."""
    features: tuple[str, ...] | None = None
    """catalog scope; None means the settings' own ``features``."""
    namespace: str | None = None
    pod_labels: tuple[tuple[str, str], ...] = ()
    """networkpolicy: select the platform's pods by these labels (default: every pod)."""
    in_cluster: bool = True
    """networkpolicy: allow traffic between the pods of the namespace."""
    name: str = "egress"


@dataclass(frozen=True)
class Artifact:
    """One rendered artifact: its text, and what a person should know about it."""

    text: str
    warnings: tuple[str, ...] = ()


Renderer = Callable[[Settings, RenderOptions], Artifact]

KINDS = ("helm", "env", "networkpolicy", "squid", "pac")


def renderer(kind: str) -> Renderer:
    """The ``render`` function of ``egress.render.<kind>``."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact {kind!r}; use one of: {', '.join(KINDS)}")
    module = importlib.import_module(f"egress.render.{kind}")
    func: Renderer = module.render
    return func
