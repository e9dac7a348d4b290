"""Wiring the collector to a registry and the HTTP server (the daemon and the exporter)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, ProcessCollector
from sqlalchemy import Engine, text

from firebreak.config.model import Metrics
from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs
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


def serve(
    settings: Metrics, inputs: ScrapeInputs, healthy: Check, ready: Check, listen: str | None = None
) -> MetricsServer:
    """Start serving; raises OSError when the address cannot be bound or TLS files read."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FirebreakCollector(inputs))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds, start
    tls = (str(settings.tls.cert_file), str(settings.tls.key_file)) if settings.tls else None
    server = MetricsServer(
        listen or settings.listen,
        registry,
        healthy,
        ready,
        users=settings.basic_auth_users,
        tls=tls,
    )
    server.start()
    return server
