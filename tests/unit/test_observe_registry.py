"""Metrics land in the registry they were enabled for, however many registries came and went.

Counters were once kept per ``id(registry)``: a new registry at a collected one's address got the
old counters, and its own export was missing them (a flaky tunnel-metrics test showed it).
"""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from egress import observe


def test_each_new_registry_gets_its_own_counters() -> None:
    try:
        for i in range(200):
            registry = CollectorRegistry()
            assert observe.enable_metrics(registry)
            observe.tunnel_connection(True)
            observe.tunnel_connection(False)
            text = generate_latest(registry).decode()
            assert "egress_tunnel_connections_total 1.0" in text, f"registry {i}: {text[:200]}"
            observe.disable_metrics()
            del registry
            gc.collect()
    finally:
        observe.disable_metrics()
