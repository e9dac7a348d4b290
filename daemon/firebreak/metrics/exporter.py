"""Wiring the collector to a registry and the HTTP server (the daemon and the exporter)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import partial

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from sqlalchemy import Engine

from firebreak.clock import utcnow
from firebreak.config.model import Metrics
from firebreak.daemon.overview import fleet_overview, overview
from firebreak.history.database import DatabaseError, schema_advice, schema_state
from firebreak.metrics import page
from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs, history_trouble
from firebreak.metrics.fleet import FleetCollector
from firebreak.metrics.http import Check, MetricsServer


def database_ready(engine: Callable[[], Engine]) -> Check:
    """Ready while the run history can be read: reachable, and at this firebreak's schema."""

    def check() -> tuple[bool, str]:
        try:
            state = schema_state(engine())
        except DatabaseError as exc:
            return False, str(exc)
        except Exception as exc:  # any driver error means "not ready"
            return False, f"database unreachable: {type(exc).__name__}"
        if not state.up_to_date:
            return False, schema_advice(state)
        return True, "ready"

    return check


def status_answer(inputs: ScrapeInputs) -> tuple[int, str]:
    """The status page, or why it cannot be had (503): read afresh for every request."""
    host = inputs.host_name()
    try:
        engine = inputs.engine()
        state = schema_state(engine)
        if not state.up_to_date:
            return 503, page.trouble_page(host, schema_advice(state))
        seen = overview(inputs.config(), engine, utcnow(), host)
    except Exception as exc:  # the page must answer even when the database does not
        return 503, page.trouble_page(host, history_trouble(inputs.engine, exc))
    return 200, page.status_page(seen, host, inputs.restic_version())


def fleet_answer(inputs: ScrapeInputs) -> tuple[int, str]:
    """The fleet's page, or why it cannot be had (503)."""
    try:
        engine = inputs.engine()
        state = schema_state(engine)
        if not state.up_to_date:
            return 503, page.trouble_page("the fleet", schema_advice(state))
        now = utcnow()
        return 200, page.fleet_page(fleet_overview(engine, now), now, inputs.restic_version())
    except Exception as exc:  # the page must answer even when the database does not
        return 503, page.trouble_page("the fleet", history_trouble(inputs.engine, exc))


def serve(
    settings: Metrics,
    inputs: ScrapeInputs,
    healthy: Check,
    ready: Check,
    listen: str | None = None,
    *,
    fleet: bool = False,
) -> MetricsServer:
    """Start serving (fleet: every host of the history, not one); raises OSError when the
    address cannot be bound or TLS files read."""
    registry = CollectorRegistry(auto_describe=False)
    metrics: Callable[[], bytes]
    if fleet:
        collector = FleetCollector(inputs.engine, inputs.restic_version)
        registry.register(collector)
        metrics = partial(collector.render, registry)
    else:
        registry.register(FirebreakCollector(inputs))
        metrics = partial(generate_latest, registry)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds, start
    tls = (str(settings.tls.cert_file), str(settings.tls.key_file)) if settings.tls else None
    server = MetricsServer(
        listen or settings.listen,
        metrics,
        healthy,
        ready,
        pages={
            "/": (lambda: fleet_answer(inputs)) if fleet else (lambda: status_answer(inputs)),
            "/runbook": lambda: (200, page.runbook_page()),
        },
        users=settings.basic_auth_users,
        tls=tls,
    )
    settle()
    server.start()
    return server


def settle() -> None:
    """What is alive once serving starts (modules, classes, the engine; the first config,
    until a reload replaces it) lives about as long as the process: the garbage collector's
    full passes, which stop whatever runs while they walk every object, skip it from here
    on. A fleet exporter's full pass took about 90 ms with it and 12 ms without
    (docs/scaling.md). Frozen objects are still freed when nothing refers to them; only
    reference cycles among them are kept, once, for the process's life."""
    gc.collect()
    gc.freeze()
