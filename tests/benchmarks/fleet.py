"""``make bench-fleet``: a fleet exporter's scrape and ``status --fleet`` over a large fleet.

BENCH_HOSTS hosts (default 100), each with 10 sources × 3 sites, their heartbeats recorded,
and BENCH_FLEET_RUNS runs among them (default 10 000 000) written by PostgreSQL itself as
revision 0002 left them, then upgraded to the current schema (its time is printed). Then,
each BENCH_SCRAPES times (default 20), p50 and p99:

- a fleet exporter's first scrape (nothing cached: every host read and rendered);
- a scrape with nothing new (each host served from its cache);
- a scrape after BENCH_CHURN hosts (default 5) each recorded a backup since the last one,
  through the daemon's own write path (those hosts read and rendered again);
- ``status --fleet``, and one host's ``firebreak status`` (its overview) on that history.

PostgreSQL only: BENCH_DATABASE_URL=postgresql+psycopg://… (an empty database: everything in
it is dropped; BENCH_REUSE=1 measures again one an earlier run filled). Each host backs up to
its own local repositories (nothing shared). Nothing here asserts a time (docs/scaling.md has
the numbers and targets).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from firebreak.clock import utcnow
from firebreak.daemon.overview import fleet_overview, overview
from firebreak.fleet import HostProfile
from firebreak.history.database import alembic_config, make_engine
from firebreak.history.hosts import beat
from firebreak.history.records import RunOutcome, finish_run, start_run
from firebreak.metrics.exporter import settle
from firebreak.metrics.fleet import FleetCollector
from firebreak.outcomes import Operation, Status
from tests.benchmarks.history import SITES, SOURCES, _config, _empty, _percentiles, _report


def main() -> None:
    url = os.environ.get("BENCH_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        print("bench-fleet needs BENCH_DATABASE_URL=postgresql+psycopg://… (an empty database)")
        return
    hosts = int(os.environ.get("BENCH_HOSTS", "100"))
    runs = int(os.environ.get("BENCH_FLEET_RUNS", "10000000"))
    scrapes = int(os.environ.get("BENCH_SCRAPES", "20"))
    engine = make_engine(url)
    if os.environ.get("BENCH_REUSE") != "1":
        _fill(engine, hosts, runs)
    for index in range(hosts):
        beat(
            engine,
            f"host{index}",
            started_at=utcnow(),
            interval=timedelta(minutes=1),
            version="bench",
            pid=None,
            profile=HostProfile.of(_config(f"host{index}"), utcnow()).to_json(),
        )
    churn = int(os.environ.get("BENCH_CHURN", "5"))

    def exporter() -> tuple[FleetCollector, CollectorRegistry]:
        registry = CollectorRegistry()
        collector = FleetCollector(lambda: engine, lambda: "0.14.0")
        registry.register(collector)
        return collector, registry

    settle()  # as serving does
    warm, registry = exporter()
    size = len(warm.render(registry))
    print(f"  one scrape: {size // 1024} KiB")
    _percentiles("fleet scrape, first", lambda: _first_scrape(exporter), scrapes)
    _percentiles("fleet scrape, nothing new", lambda: warm.render(registry), scrapes)
    turn = iter(range(10**9))

    def churned() -> None:
        round_ = next(turn)
        for index in range(churn):
            _backup(engine, f"host{(round_ * churn + index) % hosts}")
        began = time.perf_counter()
        warm.render(registry)
        churned_ms.append((time.perf_counter() - began) * 1000)

    churned_ms: list[float] = []
    for _ in range(scrapes):
        churned()
    _report(f"fleet scrape, {churn} hosts moved", churned_ms)
    _percentiles("status --fleet", lambda: fleet_overview(engine, utcnow()), scrapes)
    config = _config("host0")
    _percentiles("status of one host", lambda: overview(config, engine, utcnow()), scrapes)
    engine.dispose()


def _first_scrape(exporter: Callable[[], tuple[FleetCollector, CollectorRegistry]]) -> None:
    collector, registry = exporter()
    collector.render(registry)


def _backup(engine: Engine, host: str) -> None:
    """A backup of the host's first source at its first site, recorded as the daemon does."""
    run_id = start_run(
        engine,
        source=SOURCES[0],
        site=SITES[0],
        operation=Operation.BACKUP,
        host=host,
        restic_version="0.14.0",
    )
    finish_run(engine, run_id, RunOutcome(Status.SUCCESS, snapshot_id="bench"))


def _fill(engine: Engine, hosts: int, runs: int) -> None:
    _empty(engine)
    from alembic import command

    command.upgrade(alembic_config(engine), "0002")
    per_hour = hosts * len(SOURCES) * len(SITES)
    began = time.perf_counter()
    start = datetime.now(UTC) - timedelta(hours=runs // per_hour + 1)
    with engine.begin() as connection:
        # One hourly backup of every source of every host to every site, oldest first; one in
        # fifty failed.
        connection.execute(
            text(
                """
                INSERT INTO runs (source, site, operation, status, started_at, finished_at,
                                  duration_seconds, exit_code, error_class, snapshot_id,
                                  bytes_added, repository_initialized, restic_version, host)
                SELECT 'src' || (i % :sources),
                       chr(97 + (i / :sources) % :sites),
                       'backup',
                       CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'success' END,
                       :start + (i / :per_hour) * interval '1 hour',
                       :start + (i / :per_hour) * interval '1 hour' + interval '40 seconds',
                       40, CASE WHEN i % 50 = 0 THEN 1 ELSE 0 END,
                       CASE WHEN i % 50 = 0 THEN 'SiteUnreachable' END,
                       CASE WHEN i % 50 = 0 THEN NULL ELSE md5(i::text) END,
                       i % 100000, false, '0.14.0',
                       'host' || ((i / (:sources * :sites)) % :hosts)
                FROM generate_series(0, :runs - 1) AS i
                """
            ),
            {
                "sources": len(SOURCES),
                "sites": len(SITES),
                "hosts": hosts,
                "per_hour": per_hour,
                "runs": runs,
                "start": start.replace(tzinfo=None),
            },
        )
    print(f"fleet of {hosts} hosts × 30 series, {runs} runs (postgresql):")
    print(f"  written in {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    command.upgrade(alembic_config(engine), "head")
    print(f"  `firebreak db upgrade` to the current schema: {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
