"""A fleet: several hosts' daemons recording into one PostgreSQL history, with sources of the
same name backed up to the same sites, watched by one fleet exporter and `status --fleet`."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from firebreak.actions.cycle import run_cycle
from firebreak.actions.identity import location
from firebreak.actions.retention import apply_retention, forget_at_site
from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.daemon.jobs import Jobs
from firebreak.fleet import HostProfile, peers, repositories
from firebreak.history.coordination import repository_lock
from firebreak.history.database import make_engine
from firebreak.history.freshness import Proof
from firebreak.history.hosts import beat
from firebreak.history.models import Run
from firebreak.history.records import all_runs
from firebreak.outcomes import Status
from tests.support.cli import firebreak
from tests.support.daemon import DaemonProcess
from tests.support.scrape import get, running_exporter, samples, value
from tests.support.servers import PostgresCluster, RestServer
from tests.support.setup import Setup

pytestmark = pytest.mark.slow

HOSTS = ("web1", "web2", "web3")


@pytest.fixture
def daemons() -> Iterator[dict[str, DaemonProcess]]:
    started: dict[str, DaemonProcess] = {}
    yield started
    for daemon in started.values():
        daemon.close()


def _host(root: Path, name: str, url: str, shared: RestServer) -> Setup:
    """One host: its own state and metrics port, the fleet's history, the sites it shares
    with the others (one REST server: a local path would be each host's own disk)."""
    (root / name).mkdir()
    setup = Setup(root / name)
    setup.top["host"] = name
    setup.top["database"] = {"url": url}
    setup.top["daemon"] = {"heartbeat": "2s"}  # silent after 6s
    for site in ("a", "b"):
        setup.site(site, shared.url(f"{root.name}-{site}"))
    # Every host has an "etc"; web3's is the one that will stop.
    setup.source("etc", ["a", "b"], schedule="every 2s", max_age="20s", min_fresh_sites=2)
    return setup


def _successes(url: str, host: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = session.scalars(
                select(Run).where(
                    Run.host == host, Run.operation == "backup", Run.status == Status.SUCCESS
                )
            )
            return len(list(runs))
    finally:
        engine.dispose()


def test_a_fleet_shows_a_killed_host_silent_and_its_sites_going_stale(
    tmp_path: Path,
    postgres_cluster: PostgresCluster,
    rest_server: RestServer,
    daemons: dict[str, DaemonProcess],
) -> None:
    url = postgres_cluster.create_database()
    shared = rest_server
    setups = {name: _host(tmp_path, name, url, shared) for name in HOSTS}
    # Three daemons start at once on a new history: one creates its schema.
    for name, setup in setups.items():
        daemons[name] = DaemonProcess(setup.write(), setup.dir)
    for daemon in daemons.values():
        daemon.ready()
    for name, daemon in daemons.items():
        daemon.wait_for(f"{name}'s backups", lambda name=name: _successes(url, name) >= 4)

    # They found the shared sites empty at once: one created each repository, the others
    # waited their turn and found it there (two restic init at once leave a config only one
    # of them can read).
    engine = make_engine(url)
    try:
        inits = [run for run in all_runs(engine) if run.operation == "init"]
    finally:
        engine.dispose()
    assert sorted((run.site, run.status) for run in inits) == [
        ("a", Status.SUCCESS),
        ("b", Status.SUCCESS),
    ]

    monitor = setups["web1"].write()
    fleet = firebreak(monitor, "status", "--fleet", "--json")
    # (Seen once in CI, not reproduced: web2 and web3 not safe here. Their logs say why.)
    logs = "".join(f"\n--- {name}:\n{daemon.log()[-4000:]}" for name, daemon in daemons.items())
    assert fleet.returncode == 0, fleet.stdout + fleet.stderr + logs
    seen = {host["host"]: host for host in json.loads(fleet.stdout)["hosts"]}
    assert {name: seen[name]["state"] for name in HOSTS} == dict.fromkeys(HOSTS, "alive")
    assert all(seen[name]["sources"] == {"etc": True} for name in HOSTS)

    with running_exporter(monitor, "--fleet", log=tmp_path / "exporter.log") as base:
        found = samples(get(f"{base}/metrics")[1])
        for name in HOSTS:
            assert value(found, "firebreak_host_silent", host=name) == 0
            assert value(found, "firebreak_source_safe", host=name, source="etc") == 1
        runs = value(
            found,
            "firebreak_runs_total",
            host="web1",
            source="etc",
            site="a",
            operation="backup",
            status="success",
        )
        assert runs >= 2

        # web3's machine dies; web2 is stopped by its operator.
        daemons["web3"].signal(signal.SIGKILL)
        assert daemons["web2"].stop() == 0

        def silent() -> bool:
            now = samples(get(f"{base}/metrics")[1])
            return value(now, "firebreak_host_silent", host="web3") == 1

        daemons["web1"].wait_for("web3 to be silent", silent, timeout=30)
        found = samples(get(f"{base}/metrics")[1])
        assert value(found, "firebreak_host_silent", host="web1") == 0
        assert value(found, "firebreak_host_silent", host="web2") == 1
        assert value(found, "firebreak_host_stopped", host="web2") == 1
        assert value(found, "firebreak_host_stopped", host="web3") == 0

        # Nobody backs up web3's etc any more: its sites go stale, web1's stay fresh. (The
        # source is unsafe once one site is stale; the other follows a moment later.)
        def stale() -> bool:
            now = samples(get(f"{base}/metrics")[1])
            return value(now, "firebreak_source_safe", host="web3", source="etc") == 0 and all(
                value(now, "firebreak_site_fresh", host="web3", source="etc", site=site) == 0
                for site in ("a", "b")
            )

        daemons["web1"].wait_for("web3's etc to go stale", stale, timeout=40)
        found = samples(get(f"{base}/metrics")[1])
        assert value(found, "firebreak_site_fresh", host="web3", source="etc", site="a") == 0
        assert value(found, "firebreak_source_safe", host="web1", source="etc") == 1
        page = get(f"{base}/")[1]
        assert "web3" in page and "SILENT" in page and "NOT SAFE" in page

    fleet = firebreak(monitor, "status", "--fleet")
    assert fleet.returncode == 4, fleet.stdout + fleet.stderr
    lines = {
        row.split()[0]: row for row in fleet.stdout.splitlines() if row.strip().startswith("web")
    }
    assert "alive" in lines["web1"]
    assert "stopped" in lines["web2"]
    assert "SILENT" in lines["web3"] and "etc (0 of 2 fresh)" in lines["web3"]
    assert "NOT SAFE: web2, web3" in fleet.stdout

    # web3 is retired: it leaves the fleet's view, its runs stay.
    forgotten = firebreak(monitor, "db", "forget-host", "web3")
    assert forgotten.returncode == 0, forgotten.stderr
    again = firebreak(monitor, "db", "forget-host", "web3")
    assert again.returncode == 2 and "no host 'web3'" in again.stderr
    fleet = firebreak(monitor, "status", "--fleet", "--json")
    assert [host["host"] for host in json.loads(fleet.stdout)["hosts"]] == ["web1", "web2"]
    assert _successes(url, "web3") >= 4
    assert daemons["web1"].stop() == 0


def _runtime(setup: Setup) -> Runtime:
    """The host's runtime, its daemon's heartbeat recorded (how peers know it shares)."""
    rt = setup.runtime()
    beat(
        rt.engine,
        rt.host,
        started_at=utcnow(),
        interval=timedelta(minutes=1),
        version="test",
        pid=None,
        profile=HostProfile.of(rt.config, utcnow()).to_json(),
    )
    return rt


def _at_once(jobs: list[Callable[[], None]]) -> None:
    """Run the jobs in threads released together, as three daemons' schedules fire."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], None]) -> None:
        start.wait()
        job()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)


def test_hosts_sharing_a_repository_prune_and_check_it_once_per_schedule(
    tmp_path: Path, postgres_cluster: PostgresCluster, rest_server: RestServer
) -> None:
    url = postgres_cluster.create_database()
    shared = rest_server
    setups = {name: _host(tmp_path, name, url, shared) for name in HOSTS}
    for setup in setups.values():
        setup.sources["etc"]["retention"] = {"keep_last": 1, "schedule": "0 3 * * *"}
    runtimes = {name: _runtime(setup) for name, setup in setups.items()}
    for rt in runtimes.values():
        for _ in range(2):
            assert run_cycle(rt, "etc").status == Status.SUCCESS
    cancel = threading.Event()
    jobs = {
        name: Jobs(lambda rt=rt: rt, cancel, lambda _name: None, lambda: None)
        for name, rt in runtimes.items()
    }

    def runs(operation: str) -> list[Run]:
        engine = make_engine(url)
        try:
            return [run for run in all_runs(engine) if run.operation == operation]
        finally:
            engine.dispose()

    # The three daemons' retention fires at once: each forgets its own snapshots, one prunes.
    _at_once([lambda job=job: job.retention("etc") for job in jobs.values()])
    forgets = runs("forget")
    assert sorted((r.host, r.site, r.status) for r in forgets) == sorted(
        (host, site, Status.SUCCESS) for host in HOSTS for site in ("a", "b")
    )
    prunes = runs("prune")
    for site in ("a", "b"):
        at_site = [run for run in prunes if run.site == site]
        assert len(at_site) == 3
        done = [run for run in at_site if run.status == Status.SUCCESS]
        assert len(done) == 1, [(r.host, r.status, r.error_message) for r in at_site]
        for skipped in (run for run in at_site if run is not done[0]):
            assert skipped.status == Status.SKIPPED
            # Skipped while a host held the repository (the pruning one for its prune, or any
            # one for its own forget just before: the holder is named), or after it pruned.
            assert (skipped.error_message or "").startswith(
                ("held by web", f"pruned by {done[0].host} at ")
            ), skipped.error_message
    # Every host kept only its newest snapshot at each site: forgets never crossed hosts.
    for site in ("a", "b"):
        listed = firebreak(setups["web1"].write(), "restic", site, "--", "snapshots", "--json")
        assert listed.returncode == 0, listed.stderr
        assert sorted(s["hostname"] for s in json.loads(listed.stdout)) == sorted(HOSTS)

    # Fired again within the same schedule (a daemon restarted): nobody prunes again.
    _at_once([lambda job=job: job.retention("etc") for job in jobs.values()])
    again = [run for run in runs("prune") if run.id > max(r.id for r in prunes)]
    assert len(again) == 6 and {run.status for run in again} == {Status.SKIPPED}
    assert len([run for run in runs("prune") if run.status == Status.SUCCESS]) == 2

    # Their checks fire at once too: one check per repository, and it proves it for all.
    # (Their check_schedule is the default, weekly.)
    _at_once(
        [lambda job=job, site=site: job.check(site) for job in jobs.values() for site in ("a", "b")]
    )
    checks = runs("check")
    for site in ("a", "b"):
        passed = [r for r in checks if r.site == site and r.status == Status.SUCCESS]
        assert len(passed) == 1, [(r.host, r.site, r.status, r.error_message) for r in checks]
        others = [r for r in checks if r.site == site and r is not passed[0]]
        assert {r.status for r in others} == {Status.SKIPPED}
        assert all((r.error_message or "").startswith(("held by ", "checked by ")) for r in others)
    engine = make_engine(url)
    try:
        for name, rt in runtimes.items():
            shares = peers(engine, name, repositories(rt.config))
            proof = Proof.read(engine, name, shares)
            assert {site: run.status for site, run in proof.checks.items()} == {
                "a": Status.SUCCESS,
                "b": Status.SUCCESS,
            }, name
    finally:
        engine.dispose()
    for rt in runtimes.values():
        rt.engine.dispose()


def test_db_copy_moves_a_hosts_sqlite_history_into_the_fleets_and_the_daemon_goes_on_there(
    setup: Setup, postgres_cluster: PostgresCluster
) -> None:
    setup.top["host"] = "web9"
    setup.local_site("a")
    setup.local_site("b")
    setup.source("etc", ["a", "b"])
    config = setup.write()
    for _ in range(2):
        assert firebreak(config, "backup", "etc").returncode == 0
    url = postgres_cluster.create_database()
    with_password = url.replace("postgresql+psycopg://", "postgresql+psycopg://fb:hunter2@")
    refused = firebreak(config, "db", "copy", "--to", with_password)
    assert refused.returncode == 2 and "PGPASSWORD" in refused.stderr
    assert "hunter2" not in refused.stdout + refused.stderr

    copied = firebreak(config, "db", "copy", "--to", url)
    assert copied.returncode == 0, copied.stderr
    assert "copied 6 runs, 2 cycles and 2 recorded repositories of web9" in copied.stdout
    again = firebreak(
        config, "db", "copy", "--to", "${FLEET_URL}", env={**os.environ, "FLEET_URL": url}
    )
    assert again.returncode == 0, again.stderr
    assert "copied 0 runs, 0 cycles and 0 recorded repositories" in again.stdout
    assert "(10 were there already)" in again.stdout

    # Pointed at the fleet's database, the host sees its history there and backs up on.
    setup.top["database"] = {"url": url}
    config = setup.write()
    status = firebreak(config, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert firebreak(config, "backup", "etc").returncode == 0
    engine = make_engine(url)
    try:
        backups = [run for run in all_runs(engine) if run.operation == "backup"]
    finally:
        engine.dispose()
    assert len(backups) == 6 and {run.host for run in backups} == {"web9"}


def test_a_forget_waits_a_while_for_another_hosts_turn_then_skips_and_backups_go_on(
    tmp_path: Path, postgres_cluster: PostgresCluster, rest_server: RestServer
) -> None:
    url = postgres_cluster.create_database()
    setup = _host(tmp_path, "web1", url, rest_server)
    setup.sources["etc"]["retention"] = {"keep_last": 1}
    rt = _runtime(setup)
    assert run_cycle(rt, "etc").status == Status.SUCCESS
    # web2 holds the repository at site a (a long check, say).
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with repository_lock(
            rt.engine, location(rt, "a"), host="web2", purpose="check", patience=None
        ):
            held.set()
            done.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        forgot = forget_at_site(rt, "etc", "a", patience=1)
        assert forgot.status == Status.SKIPPED
        assert (forgot.error_message or "").startswith("held by web2 (check, since ")
        assert (forgot.error_message or "").endswith("for more than 1s: next time")
        # Site b is free: forgotten and pruned there.
        runs = apply_retention(rt, "etc", ["b"], done_since=utcnow() - timedelta(hours=1))
        assert [(run.operation, run.status) for run in runs] == [
            ("forget", Status.SUCCESS),
            ("prune", Status.SUCCESS),
        ]
    finally:
        done.set()
        holder.join()
    rt.engine.dispose()
