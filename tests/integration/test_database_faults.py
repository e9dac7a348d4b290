"""The history database unavailable, for real. When a command starts: a PostgreSQL that is
not there, a SQLite history another process holds locked, a state directory on a filesystem
remounted read-only; each time a clear error naming what is wrong, exit 5 (not ready), never
a traceback. In the middle of a cycle: PostgreSQL stopped while restic runs; the backup goes
on, and its end is written when the history answers again."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from firebreak.actions.check import check_site
from firebreak.actions.cycle import run_cycle
from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.history.models import Cycle
from firebreak.history.records import all_runs
from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs
from firebreak.outcomes import Operation, Status
from tests.support.cli import firebreak
from tests.support.daemon import restic_processes
from tests.support.mounts import tmpfs
from tests.support.scrape import samples, value
from tests.support.servers import PostgresCluster, find_postgres_bindir, free_port
from tests.support.setup import Setup

NOT_READY = 5


def _fails_clearly(setup: Setup, *command: str, saying: str) -> None:
    done = firebreak(setup.write(), *command, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == NOT_READY, said
    assert saying in said, said
    assert "Traceback" not in said, said


def _daemon_fails_clearly(setup: Setup, saying: str) -> None:
    done = firebreak(setup.write(), "run", timeout=60)
    said = done.stdout + done.stderr
    assert done.returncode == NOT_READY, said
    assert saying in said and "Traceback" not in said, said


def test_a_postgresql_that_is_not_there(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    url = f"postgresql+psycopg://firebreak@127.0.0.1:{free_port()}/history"
    setup.top["database"] = {"url": url}
    for command in (("status",), ("backup", "www")):
        _fails_clearly(setup, *command, saying="Connection refused")
    _daemon_fails_clearly(setup, "cannot open the database")


def test_a_sqlite_history_another_process_holds_locked(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    assert firebreak(setup.write(), "db", "upgrade").returncode == 0
    holder = sqlite3.connect(Path(setup.top["state_dir"]) / "firebreak.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        _fails_clearly(setup, "backup", "www", saying="database is locked")
    finally:
        holder.close()
    assert firebreak(setup.write(), "backup", "www").returncode == 0, "once let go, it works"


@pytest.mark.root
def test_a_state_directory_remounted_read_only(setup: Setup, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "state", size="16m") as state:
        setup.local_site("a")
        setup.source("www", ["a"])
        setup.top["state_dir"] = str(state)
        assert firebreak(setup.write(), "db", "upgrade").returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        _fails_clearly(setup, "backup", "www", saying="Read-only file system")
        _daemon_fails_clearly(setup, "Read-only file system")


def test_a_postgresql_stopped_mid_backup_gets_the_backups_end_when_it_is_back(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if find_postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    cluster = PostgresCluster(tmp_path / "pg")
    cluster.start()
    try:
        setup.top["database"] = {"url": cluster.create_database()}
        setup.local_site("fast")
        setup.local_site("slow", limit_upload=300)  # 3 MB at 300 KiB/s: about 10 s
        setup.source("www", ["fast", "slow"])
        rt = setup.runtime()
        assert run_cycle(rt, "www").status == Status.SUCCESS
        (setup.source_dir / "new.bin").write_bytes(os.urandom(3_000_000))

        def stop_the_history_mid_backup() -> None:
            deadline = time.monotonic() + 30
            while not restic_processes(str(setup.dir)) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)
            cluster.stop()

        stopper = threading.Thread(target=stop_the_history_mid_backup)
        stopper.start()
        caplog.set_level(logging.INFO)
        report = run_cycle(rt, "www")
        stopper.join()

        # The backups went on and ended well, as this process saw them.
        assert report.status == Status.SUCCESS
        slow = next(run for run in report.runs if run.site == "slow")
        assert slow.status == Status.SUCCESS and slow.snapshot_id
        kept = [r.getMessage() for r in caplog.records if "kept to write later" in r.getMessage()]
        assert any(f"snapshot {slow.snapshot_id}" in line for line in kept), kept
        assert len(rt.unwritten) >= 2  # the slow site's end and the cycle's
        scraped = _scrape(rt)
        assert value(scraped, "firebreak_database_up") == 0
        assert value(scraped, "firebreak_history_unwritten") == len(rt.unwritten)

        cluster.start()
        back = utcnow()
        # The next run writes what waits first, in order, with the times it happened.
        assert check_site(rt, "slow").status == Status.SUCCESS
        assert len(rt.unwritten) == 0
        runs = all_runs(rt.engine)
        recorded = next(r for r in runs if r.id == slow.id)
        assert (recorded.status, recorded.snapshot_id) == (Status.SUCCESS, slow.snapshot_id)
        assert recorded.finished_at is not None and recorded.finished_at < back
        assert not [r for r in runs if r.status == Status.RUNNING]
        assert [r.operation for r in runs][-1] == Operation.CHECK
        with rt.engine.connect() as connection:
            cycle = connection.execute(
                Cycle.__table__.select().where(Cycle.id == report.cycle_id)
            ).one()
        assert cycle.status == Status.SUCCESS and cycle.finished_at < back
        shown = firebreak(setup.path, "status", "--json")
        assert slow.snapshot_id in shown.stdout
        scraped = _scrape(rt)
        assert value(scraped, "firebreak_database_up") == 1
        assert value(scraped, "firebreak_history_unwritten") == 0
    finally:
        cluster.close()


def _scrape(rt: Runtime) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What the daemon's /metrics says (its collector, with its kept writes)."""
    registry = CollectorRegistry(auto_describe=False)
    inputs = ScrapeInputs(
        config=lambda: rt.config,
        engine=lambda: rt.engine,
        restic_version=lambda: str(rt.restic_version),
        unwritten=lambda: len(rt.unwritten),
    )
    registry.register(FirebreakCollector(inputs))
    return samples(generate_latest(registry).decode())
