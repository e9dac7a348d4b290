"""Wiring the collector to a registry and the HTTP server (the daemon and the exporter)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from firebreak.metrics.collector import FirebreakCollector, Sources
from firebreak.metrics.http import Check, MetricsServer


def database_ready(engine: Callable[[], Engine]) -> Check:
    def check() -> tuple[bool, str]:
        try:
            with engine().connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not ready"
            return False, f"database unreachable: {type(exc).__name__}"
        return True, "ready"

    return check


def serve(listen: str, sources: Sources, healthy: Check, ready: Check) -> MetricsServer:
    """Start serving; raises OSError when the address cannot be bound."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FirebreakCollector(sources))
    server = MetricsServer(listen, registry, healthy, ready)
    server.start()
    return server
