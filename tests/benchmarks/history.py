"""``make bench`` (second part): what a scrape and ``firebreak status`` cost on a long history.

A history of BENCH_RUNS runs (default 1 000 000) of 10 sources × 3 sites is written as an
older firebreak (revision 0002) left it, upgraded to the current schema (its time is printed:
that is what `firebreak db upgrade` costs on it), and then read the way the daemon reads it:

- a scrape: the collector behind /metrics, rendered to text, BENCH_SCRAPES times (default
  50), p50 and p99;
- ``firebreak status``: the overview it prints, BENCH_SCRAPES times, p50 and p99.

SQLite by default; BENCH_DATABASE_URL=postgresql+psycopg://... runs it on PostgreSQL (an
empty database: everything in it is dropped). The targets (docs/scaling.md): a scrape's
p99 ≤ 50 ms and status ≤ 100 ms with 1 M runs. Nothing here asserts a time.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, MetaData, column, table, text

from firebreak.config.model import Config
from firebreak.daemon.overview import overview
from firebreak.history.database import alembic_config, make_engine
from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs
from firebreak.metrics.exporter import settle
from tests.benchmarks.verdicts import judge

SOURCES = [f"src{index}" for index in range(10)]
SITES = ("a", "b", "c")
HOST = "bench"
# docs/scaling.md: with 1 M runs in the history.
SCRAPE_TARGET_MS = 50.0
STATUS_TARGET_MS = 100.0
COLUMNS = (
    "cycle_id",
    "source",
    "site",
    "operation",
    "status",
    "started_at",
    "finished_at",
    "duration_seconds",
    "exit_code",
    "error_class",
    "snapshot_id",
    "bytes_added",
    "files_new",
    "files_changed",
    "repository_initialized",
    "restic_version",
    "host",
)


def config_data(host: str = HOST) -> dict[str, Any]:
    """The config of the history's host: 10 sources, each to the same 3 sites."""
    location = {"provider": "p", "region": "r", "country": "FR"}
    return {
        "host": host,
        "sites": {
            name: {
                "repository": f"/srv/{name}",
                "password_command": "true",
                "location": {**location, "datacenter": name},
                "drill_schedule": "0 4 1 * *",
            }
            for name in SITES
        },
        "sources": {
            name: {"paths": ["/srv"], "sites": list(SITES), "max_age": "26h"} for name in SOURCES
        },
    }


def _config(host: str = HOST) -> Config:
    return Config.model_validate(config_data(host))


def fill(engine: Engine, runs: int) -> None:
    """runs rows, hourly backups of every source to every site, newest now; one in 50
    failed; checks and drills among them."""
    from alembic import command

    command.upgrade(alembic_config(engine), "0002")
    rows_table = table("runs", *(column(name) for name in COLUMNS))
    rng = random.Random(17)
    per_hour = len(SOURCES) * len(SITES)
    start = datetime.now(UTC) - timedelta(hours=runs // per_hour + 1)
    batch: list[dict[str, object]] = []
    with engine.begin() as connection:
        for index in range(runs):
            began = (start + timedelta(hours=index // per_hour)).replace(tzinfo=None)
            failed = rng.random() < 0.02
            operation = "backup" if index % 500 else rng.choice(("check", "drill"))
            batch.append(
                {
                    "cycle_id": None,
                    "source": None if operation == "check" else SOURCES[index % len(SOURCES)],
                    "site": SITES[(index // len(SOURCES)) % len(SITES)],
                    "operation": operation,
                    "status": "failed" if failed else "success",
                    "started_at": began,
                    "finished_at": began + timedelta(seconds=40),
                    "duration_seconds": rng.uniform(5, 400),
                    "exit_code": 1 if failed else 0,
                    "error_class": "SiteUnreachable" if failed else None,
                    "snapshot_id": None if failed else f"{index:016x}",
                    "bytes_added": 0 if failed else rng.randrange(10**6),
                    "files_new": 3,
                    "files_changed": 5,
                    "repository_initialized": False,
                    "restic_version": "0.14.0",
                    "host": HOST,
                }
            )
            if len(batch) == 20_000:
                connection.execute(rows_table.insert(), batch)
                batch.clear()
        if batch:
            connection.execute(rows_table.insert(), batch)


def _percentiles(what: str, call: Callable[[], object], times: int) -> float:
    taken = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        taken.append((time.perf_counter() - began) * 1000)
    return _report(what, taken)


def _report(what: str, taken: list[float]) -> float:
    """p50 and p99 of times in milliseconds, printed; the p99 returned."""
    taken = sorted(taken)
    p99 = taken[min(len(taken) - 1, round(len(taken) * 0.99) - 1)]
    print(f"  {what:<28} p50 {statistics.median(taken):8.1f} ms   p99 {p99:8.1f} ms")
    return p99


def _empty(engine: Engine) -> None:
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


def upgrade(engine: Engine) -> None:
    """To the current schema, as `firebreak db upgrade` does."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def main(small: bool = False) -> None:
    """BENCH_RUNS (default 1 000 000; 10 000 when small) runs, BENCH_SCRAPES reads of each."""
    runs = int(os.environ.get("BENCH_RUNS", "10000" if small else "1000000"))
    scrapes = int(os.environ.get("BENCH_SCRAPES", "10" if small else "50"))
    url = os.environ.get("BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-history-") as work:
        engine = make_engine(url or f"sqlite:///{Path(work) / 'history.db'}")
        _empty(engine)
        print(f"\nhistory of {runs} runs ({engine.dialect.name}), 10 sources × 3 sites:")
        began = time.perf_counter()
        fill(engine, runs)
        print(f"  written in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        upgrade(engine)
        print(
            f"  `firebreak db upgrade` to the current schema: {time.perf_counter() - began:.1f} s"
        )
        config = _config()
        settle()  # as serving does
        registry = CollectorRegistry()
        inputs = ScrapeInputs(lambda: config, lambda: engine, lambda: "0.14.0")
        registry.register(FirebreakCollector(inputs))
        text_size = len(generate_latest(registry))
        scrape = _percentiles(
            f"scrape ({text_size // 1024} KiB)", lambda: generate_latest(registry), scrapes
        )
        now = datetime.now(UTC)
        status = _percentiles("status (overview)", lambda: overview(config, engine, now), scrapes)
        engine.dispose()
    judge(f"a scrape's p99 ({runs} runs)", scrape, SCRAPE_TARGET_MS, " ms", digits=1)
    judge(f"status's reads, p99 ({runs} runs)", status, STATUS_TARGET_MS, " ms", digits=1)


if __name__ == "__main__":
    main()
