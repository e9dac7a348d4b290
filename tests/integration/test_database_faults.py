"""The history database unavailable, for real. When a command starts: a PostgreSQL that is
not there, a SQLite history another process holds locked, a state directory on a filesystem
remounted read-only; each time a clear error naming what is wrong, exit 5 (not ready), never
a traceback. In the middle of a cycle: PostgreSQL stopped while restic runs; the backup goes
on, and its end is written when the history answers again. Before a cycle: PostgreSQL
stopped; the cycle backs up all the same, guarded by the repositories the process last read,
and is written, start and end, when the history answers again."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from firebreak.actions.check import check_site
from firebreak.actions.cycle import run_cycle
from firebreak.actions.identity import recall_repositories
from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.history.database import make_engine
from firebreak.history.models import Cycle
from firebreak.history.records import all_runs
from firebreak.history.unwritten import Unwritten
from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs
from firebreak.outcomes import Operation, Status
from tests.support.cli import firebreak
from tests.support.daemon import restic_processes
from tests.support.mounts import tmpfs
from tests.support.scrape import samples, value
from tests.support.servers import PostgresCluster, find_postgres_bindir, free_port
from tests.support.setup import Setup

NOT_READY = 5


@pytest.fixture
def cluster(setup: Setup, tmp_path: Path) -> Iterator[PostgresCluster]:
    """A PostgreSQL of the test's own holding the setup's history: a test may stop it."""
    if find_postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    cluster = PostgresCluster(tmp_path / "pg")
    cluster.start()
    try:
        setup.top["database"] = {"url": cluster.create_database()}
        yield cluster
    finally:
        cluster.close()


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
    setup: Setup, cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
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


def _as_the_daemon(rt: Runtime) -> Runtime:
    """The runtime as the daemon starts it (daemon/preflight.py, daemon/service.py)."""
    rt.unwritten = Unwritten(keep_starts=True)
    recall_repositories(rt)
    return rt


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


def test_a_cycle_that_starts_while_postgresql_is_stopped_backs_up_and_is_recorded_later(
    setup: Setup, cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("here", "there", "moved"):
        setup.local_site(name)
    setup.source("www", ["here", "there", "moved"])
    rt = _as_the_daemon(setup.runtime())
    assert run_cycle(rt, "www").status == Status.SUCCESS
    # Someone replaces one site's repository (same place, same password) ...
    shutil.rmtree(setup.dir / "repo-moved")
    assert firebreak(setup.path, "restic", "moved", "--", "init").returncode == 0
    # ... and the history stops before the next cycle begins.
    cluster.stop()
    (setup.source_dir / "new.txt").write_text("written while the history was away\n")
    caplog.set_level(logging.INFO)
    report = run_cycle(rt, "www")

    runs = {run.site: run for run in report.runs}
    assert report.cycle_id < 0 and report.status == Status.FAILED
    for site in ("here", "there"):
        assert runs[site].status == Status.SUCCESS and runs[site].snapshot_id
        assert runs[site].id < 0  # not numbered by the history yet
        listed = firebreak(setup.path, "restic", site, "--", "snapshots", "--json")
        assert runs[site].snapshot_id in listed.stdout
    # What the history held is still what guards the sites: the new repository is found.
    assert runs["moved"].error_class == "RepositoryReplaced"
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks"
    assert len(rt.unwritten) > 0

    cluster.start()
    back = utcnow()
    assert rt.unwritten.flush(rt.engine) and len(rt.unwritten) == 0
    cycle_id = rt.unwritten.real(report.cycle_id)
    with rt.engine.connect() as connection:
        cycle = connection.execute(Cycle.__table__.select().where(Cycle.id == cycle_id)).one()
    assert cycle.status == Status.FAILED and cycle.sites_succeeded == 2
    assert cycle.started_at < cycle.finished_at < back
    recorded = [r for r in all_runs(rt.engine) if r.cycle_id == cycle_id]
    backups = {r.site: r for r in recorded if r.operation == Operation.BACKUP}
    for site in ("here", "there"):
        assert backups[site].id == rt.unwritten.real(runs[site].id)
        assert (backups[site].status, backups[site].snapshot_id) == (
            Status.SUCCESS,
            runs[site].snapshot_id,
        )
        assert backups[site].started_at < backups[site].finished_at < back
    assert backups["moved"].error_class == "RepositoryReplaced"
    assert not [r for r in all_runs(rt.engine) if r.status == Status.RUNNING]
    shown = firebreak(setup.path, "status", "--json")
    assert runs["here"].snapshot_id in shown.stdout


def test_a_site_this_process_never_read_waits_for_the_history(
    setup: Setup, cluster: PostgresCluster
) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    assert run_cycle(setup.runtime(), "www").status == Status.SUCCESS
    rt = setup.runtime()  # a fresh process: it has not read which repository a holds
    rt.unwritten = Unwritten(keep_starts=True)
    cluster.stop()
    report = run_cycle(rt, "www")
    [run] = report.runs
    # Without the history it cannot tell whether the repository is the site's: no backup.
    assert (run.status, run.error_class) == (Status.FAILED, "HistoryUnavailable")
    listed = firebreak(setup.path, "restic", "a", "--", "snapshots", "--json")
    assert listed.stdout.count('"id"') == 1  # only the first cycle's snapshot
    cluster.start()
    assert rt.unwritten.flush(rt.engine)
    last = all_runs(rt.engine)[-1]
    assert (last.site, last.error_class) == ("a", "HistoryUnavailable")


def test_a_postgresql_that_stops_answering_is_given_up_on_in_seconds(
    setup: Setup, cluster: PostgresCluster
) -> None:
    """Its port blackholed (nftables drops what is sent to it): a new connect fails after
    libpq's connect_timeout, and a request on a pooled connection within minutes, not the
    kernel's quarter of an hour of retries (docs/scaling.md); that failure is what lets the
    daemon go on without the history."""
    if os.geteuid() != 0:
        pytest.skip("nftables needs root")
    url = setup.top["database"]["url"]
    pooled = make_engine(url)
    with pooled.connect() as connection:  # one connection in the pool, established
        connection.execute(text("SELECT 1"))
    with _blackholed(cluster.port):
        fresh = make_engine(url)
        begun = time.monotonic()
        with pytest.raises(OperationalError, match="timeout"), fresh.connect():
            pass
        assert 9 <= time.monotonic() - begun < 30
        begun = time.monotonic()
        with pytest.raises(OperationalError), pooled.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert time.monotonic() - begun < 180  # seen: 85 s (30 s unanswered, then a connect)
    with pooled.connect() as connection:  # and it answers again once the port is back
        assert connection.execute(text("SELECT 1")).scalar() == 1
    pooled.dispose()
    fresh.dispose()


@contextmanager
def _blackholed(port: int) -> Iterator[None]:
    table = f"firebreak_pg_{port}"
    rules = (
        f"add table inet {table}\n"
        f"add chain inet {table} out {{ type filter hook output priority 0; }}\n"
        f"add rule inet {table} out tcp dport {port} drop\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False)
