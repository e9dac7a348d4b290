"""``firebreak run`` as systemd runs it: a real process, real restic, real signals."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from firebreak.history.database import make_engine
from firebreak.history.models import Cycle, Run
from firebreak.outcomes import Status
from tests.support.cli import firebreak, on_a_terminal
from tests.support.daemon import DaemonProcess, restic_processes
from tests.support.restore import assert_same_tree
from tests.support.scrape import get, samples, value
from tests.support.setup import Setup

pytestmark = pytest.mark.slow


@pytest.fixture
def daemons(setup: Setup) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def _start(setup: Setup, daemons: list[DaemonProcess], **kwargs: object) -> DaemonProcess:
    daemon = DaemonProcess(setup.write(), setup.dir, **kwargs)  # type: ignore[arg-type]
    daemons.append(daemon)
    return daemon


def _backups(setup: Setup, status: Status | None = None, site: str | None = None) -> list[Run]:
    return [
        r
        for r in setup.runs()
        if r.operation == "backup"
        and (status is None or r.status == status)
        and (site is None or r.site == site)
    ]


def _slow_source(setup: Setup) -> None:
    """A site that takes ~10 s per backup: 3 MB through restic's own 300 KiB/s limiter."""
    (setup.source_dir / "big.bin").write_bytes(os.urandom(3_000_000))
    setup.local_site("slow", limit_upload=300)


def _backing_up_slowly(setup: Setup, daemons: list[DaemonProcess]) -> DaemonProcess:
    """A daemon whose catch-up backup of www to the slow site is under way (the backup
    itself: its command line names the source; the site's creation before it does not)."""
    _slow_source(setup)
    setup.source("www", ["slow"], schedule="0 3 * * *")
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("the backup to start", lambda: bool(_backing_up(setup)))
    return daemon


def _backing_up(setup: Setup) -> list[int]:
    """The restic processes backing up the test's source."""
    return restic_processes(str(setup.source_dir))


def test_scheduled_cycles_notify_systemd_and_stop_cleanly(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"], schedule="every 3s")
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("three successful cycles", lambda: len(_backups(setup, Status.SUCCESS)) >= 6)
    messages = daemon.receive(1.5)
    assert messages[0].startswith("READY=1\nSTATUS=1 source, 2 sites, ")
    assert any(m.startswith("WATCHDOG=1\nSTATUS=1 source, 2 sites, ") for m in messages), messages
    assert any("next: www in " in m for m in messages)
    status, text = get(f"http://{setup.top['metrics']['listen']}/metrics")
    assert status == 200
    found = samples(text)
    assert value(found, "firebreak_source_safe", source="www") == 1
    assert value(found, "firebreak_last_outcome", source="www", site="a", outcome="success") == 1
    assert get(f"http://{setup.top['metrics']['listen']}/healthz")[0] == 200
    assert daemon.stop() == 0
    assert "firebreak daemon stopped" in daemon.log()
    assert any(m.startswith("STOPPING=1") for m in daemon.messages)
    assert not restic_processes(str(setup.dir))


def test_catch_up_after_downtime_and_not_after_a_fresh_cycle(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    setup.local_site("a")
    setup.source("www", ["a"], schedule="0 3 * * *")  # daily: only catch-up runs it here
    first = _start(setup, daemons)
    first.ready()
    first.wait_for(
        "the never-run source to catch up", lambda: len(_backups(setup, Status.SUCCESS)) == 1
    )
    assert "www is overdue at start: catching up" in first.log()
    assert first.stop() == 0

    second = _start(setup, daemons)
    second.ready()
    second.receive(4)
    assert second.stop() == 0
    assert len(_backups(setup)) == 1, "a fresh backup was repeated at start"

    # The daemon was down for two days.
    engine = make_engine(f"sqlite:///{setup.dir / 'state' / 'firebreak.db'}")
    with Session(engine) as session, session.begin():
        for row in [*session.scalars(select(Run)), *session.scalars(select(Cycle))]:
            row.started_at -= timedelta(days=2)
    engine.dispose()
    third = _start(setup, daemons)
    third.ready()
    third.wait_for("catch-up after downtime", lambda: len(_backups(setup, Status.SUCCESS)) == 2)
    assert third.stop() == 0


def test_pruning_under_a_running_daemon_keeps_the_newest_of_every_series_and_the_counts(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"], schedule="every 2s")
    setup.top["database"] = {"keep_runs": "1d"}
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("three cycles", lambda: len(_backups(setup, Status.SUCCESS)) >= 6)
    # Everything so far is made three days old, under the running daemon.
    engine = make_engine(f"sqlite:///{setup.dir / 'state' / 'firebreak.db'}")
    with Session(engine) as session, session.begin():
        for row in [*session.scalars(select(Run)), *session.scalars(select(Cycle))]:
            row.started_at -= timedelta(days=3)
    engine.dispose()
    old = {run.id: run for run in setup.runs()}
    url = f"http://{setup.top['metrics']['listen']}/metrics"
    counted = value(
        samples(get(url)[1]),
        "firebreak_runs_total",
        source="www",
        site="a",
        operation="backup",
        status="success",
    )
    first = value(
        samples(get(url)[1]), "firebreak_first_success_timestamp_seconds", source="www", site="a"
    )

    pruned = firebreak(setup.write(), "db", "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned " in pruned.stdout and "older than 1d" in pruned.stdout
    new = lambda: [r for r in _backups(setup, Status.SUCCESS) if r.id not in old]  # noqa: E731
    daemon.wait_for("two more cycles", lambda: len(new()) >= 4)
    # What was the newest then stayed; now newer runs point elsewhere, a second pass takes it.
    assert firebreak(setup.write(), "db", "prune").returncode == 0

    left = [run for run in setup.runs() if run.id in old]
    # Of the old backups, only the first success at each site stays (drills are due after
    # it); of the other old runs, only each series' newest (the init of each repository).
    assert sorted((r.operation, r.site) for r in left if r.operation != "backup") == [
        ("init", "a"),
        ("init", "b"),
    ]
    left = [run for run in left if run.operation == "backup"]
    assert sorted((run.site, run.status) for run in left) == [
        ("a", Status.SUCCESS),
        ("b", Status.SUCCESS),
    ]
    firsts = {r.site: r.id for r in reversed(old.values()) if r.operation == "backup"}
    assert {run.site: run.id for run in left} == firsts
    found = samples(get(url)[1])
    assert (
        value(
            found,
            "firebreak_runs_total",
            source="www",
            site="a",
            operation="backup",
            status="success",
        )
        > counted
    )
    assert (
        value(found, "firebreak_first_success_timestamp_seconds", source="www", site="a") == first
    )
    assert value(found, "firebreak_source_safe", source="www") == 1
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_sigkill_mid_backup_leaves_no_restic_and_the_next_cycle_succeeds(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    _slow_source(setup)
    setup.source("www", ["slow"], schedule="0 3 * * *")
    daemon = _start(setup, daemons)
    daemon.ready()
    locks = setup.dir / "repo-slow" / "locks"
    daemon.wait_for(
        "restic backup to hold its lock", lambda: locks.is_dir() and any(locks.iterdir())
    )
    time.sleep(2)  # mid-transfer
    daemon.signal(signal.SIGKILL)
    daemon.process.wait(10)
    deadline = time.monotonic() + 5
    while restic_processes(str(setup.dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not restic_processes(str(setup.dir)), "restic outlived the killed daemon"
    [left] = _backups(setup)
    assert left.status == Status.RUNNING
    assert list(locks.iterdir()), "the killed restic left its lock behind"

    again = _start(setup, daemons)
    again.ready()
    again.wait_for(
        "the next cycle to succeed", lambda: bool(_backups(setup, Status.SUCCESS)), timeout=120
    )
    assert again.stop() == 0
    runs = setup.runs()
    assert runs[0].id == left.id and runs[0].status == Status.INTERRUPTED
    assert runs[0].error_message and "found when the daemon started" in runs[0].error_message
    unlocks = [r for r in runs if r.operation == "unlock"]
    assert unlocks and unlocks[0].status == Status.SUCCESS, "no unlock before the next run"
    assert "marked interrupted" in again.log()


def test_sigterm_during_a_cycle_interrupts_restic_and_exits_0(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _backing_up_slowly(setup, daemons)
    time.sleep(1)
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 30
    assert not restic_processes(str(setup.dir))
    [run] = _backups(setup)
    assert run.status == Status.INTERRUPTED
    assert run.error_class == "Interrupted"


def test_sighup_reloads_a_valid_config_and_rejects_an_invalid_one(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    setup.local_site("a")
    setup.source("www", ["a"], schedule="0 3 * * *")
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("the first catch-up", lambda: len(_backups(setup, Status.SUCCESS)) == 1)

    setup.source("db", ["a"], schedule="every 2s")
    setup.write()
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(
        "the new source's cycles",
        lambda: len([r for r in _backups(setup, Status.SUCCESS) if r.source == "db"]) >= 2,
    )
    assert "configuration reloaded" in daemon.log()
    metrics = f"http://{setup.top['metrics']['listen']}/metrics"
    assert value(samples(get(metrics)[1]), "firebreak_config_last_reload_successful") == 1

    good = setup.path.read_text()
    setup.path.write_text(good.replace("schedule: every 2s", "schedule: every 2 seconds"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("the rejection", lambda: "configuration NOT reloaded" in daemon.log())
    assert "sources.db.schedule: '2 seconds' is not a duration" in daemon.log()
    assert value(samples(get(metrics)[1]), "firebreak_config_last_reload_successful") == 0
    count = len([r for r in _backups(setup) if r.source == "db"])
    daemon.wait_for(
        "the old config to keep running",
        lambda: len([r for r in _backups(setup) if r.source == "db"]) >= count + 2,
    )
    assert daemon.stop() == 0


def test_a_broken_config_sent_mid_backup_leaves_the_backup_and_the_running_config_alone(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _backing_up_slowly(setup, daemons)

    good = setup.path.read_text()
    setup.path.write_text(good + "sources: [this is: not yaml\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("the rejection", lambda: "configuration NOT reloaded" in daemon.log())
    assert _backing_up(setup), "the reload stopped the running backup"
    daemon.wait_for("the backup to end", lambda: bool(_backups(setup, Status.SUCCESS)), 90)
    metrics = f"http://{setup.top['metrics']['listen']}/metrics"
    assert value(samples(get(metrics)[1]), "firebreak_config_last_reload_successful") == 0
    assert daemon.stop() == 0


def test_a_reload_while_a_cycle_runs_never_runs_more_restic_than_max_parallel_runs(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    _slow_source(setup)
    setup.local_site("slow-2", limit_upload=300)
    setup.top["max_parallel_runs"] = 1
    setup.source("www", ["slow"], schedule="0 3 * * *")
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("restic to start", lambda: bool(restic_processes(str(setup.dir))))

    # The reload adds a source whose catch-up starts at once, under the new config.
    setup.source("db", ["slow-2"], schedule="0 3 * * *")
    setup.write()
    daemon.signal(signal.SIGHUP)
    most = 0
    deadline = time.monotonic() + 90
    while len(_backups(setup, Status.SUCCESS)) < 2 and time.monotonic() < deadline:
        most = max(most, len(restic_processes(str(setup.dir))))
        time.sleep(0.1)
    assert "configuration reloaded" in daemon.log()
    assert most == 1, "two restic processes ran at once with max_parallel_runs: 1"
    www, db = (_backups(setup, Status.SUCCESS, site=site)[0] for site in ("slow", "slow-2"))
    assert www.finished_at is not None and db.started_at >= www.finished_at - timedelta(seconds=1)
    assert daemon.stop() == 0


def test_a_manual_backup_waits_for_the_daemons_run_on_the_same_site(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _backing_up_slowly(setup, daemons)
    manual = firebreak(setup.path, "-v", "backup", "www", timeout=180)
    assert manual.returncode == 0, manual.stderr
    # The daemon runs it, and what it logs for it is the command's to show.
    assert "run by the daemon" in manual.stderr
    assert "site slow is busy (pid " in manual.stderr and "waiting for it" in manual.stderr
    assert daemon.stop() == 0
    first, second = sorted(_backups(setup, Status.SUCCESS), key=lambda r: r.started_at)
    assert first.finished_at is not None and first.finished_at <= second.started_at, (
        "the runs overlapped"
    )


def test_the_daemon_runs_checks_and_retention_on_their_own_schedules(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    setup.local_site("a", check_schedule="every 2s", check_read_data_subsets=2)
    setup.source(
        "www", ["a"], schedule="0 3 * * *", retention={"keep_last": 1, "schedule": "every 2s"}
    )
    daemon = _start(setup, daemons)
    daemon.ready()

    def done(operation: str) -> list[Run]:
        return [r for r in setup.runs() if r.operation == operation and r.status == Status.SUCCESS]

    daemon.wait_for(
        "two checks and a retention run", lambda: len(done("check")) >= 2 and bool(done("forget"))
    )
    assert daemon.stop() == 0
    assert all(run.source is None for run in done("check")), "a check is the site's"


def test_the_daemon_refuses_to_start_on_a_placement_violation(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"], schedule="every 2s")
    setup.top["placement"] = {"enforce": "error", "min_sites": 2}
    daemon = _start(setup, daemons)
    assert daemon.process.wait(60) == 2
    log = daemon.log()
    assert (
        'placement: source "www": site "a"' in log
        and "is on the same filesystem as source path" in log
    )
    assert "placement violation" in log and ": refusing to run" in log
    assert not any("READY=1" in m for m in daemon.receive(0.3))
    assert not (setup.dir / "state" / "firebreak.db").exists(), "it got past preflight"


def test_an_invalid_config_keeps_the_daemon_from_starting(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    setup.local_site("a")
    setup.source("www", ["a"], schedule="every 2s", max_age="soon")
    daemon = _start(setup, daemons)
    assert daemon.process.wait(60) == 2
    assert "sources.www.max_age: 'soon' is not a duration" in daemon.log()


def test_status_is_answered_by_the_daemon_running_its_config_and_says_the_same(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _caught_up(setup, daemons)
    socket_path = Path(setup.top["state_dir"]) / "control.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600

    asked = firebreak(setup.path, "-v", "status", "--json")
    assert asked.returncode == 0, asked.stderr
    assert "answered by the daemon" in asked.stderr
    shown = firebreak(setup.path, "-v", "status")
    assert shown.returncode == 0, shown.stderr
    assert "answered by the daemon" in shown.stderr
    assert "www: safe" in shown.stdout and "every source is safe (1 source)" in shown.stdout
    assert "3-2-1-1-0: copies" in shown.stdout and "next cycle: in " in shown.stdout
    # What makes it quick: neither the config model nor SQLAlchemy is imported.
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "firebreak", "-c", str(setup.path), "status"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert "| firebreak.daemon.control" in imports
    assert "sqlalchemy" not in imports and "pydantic" not in imports

    # An edited file the daemon has not reloaded: status reads the history itself, and
    # says what the daemon said.
    setup.path.write_text(setup.path.read_text() + "# edited\n")
    edited = firebreak(setup.path, "-v", "status", "--json")
    assert edited.returncode == 0, edited.stderr
    assert "answered by the daemon" not in edited.stderr
    assert _timeless(json.loads(edited.stdout)) == _timeless(json.loads(asked.stdout))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("the reload", lambda: "configuration reloaded" in daemon.log())
    assert "answered by the daemon" in firebreak(setup.path, "-v", "status").stderr

    # A daemon killed leaves its socket behind: nobody answers there, status reads itself.
    daemon.process.kill()
    daemon.process.wait()
    assert socket_path.exists()
    orphaned = firebreak(setup.path, "-v", "status", "--json", timeout=30)
    assert orphaned.returncode == 0, orphaned.stderr
    assert "answered by the daemon" not in orphaned.stderr
    assert _timeless(json.loads(orphaned.stdout)) == _timeless(json.loads(asked.stdout))


def _timeless(document: dict[str, Any]) -> dict[str, Any]:
    """A status document less what moves with the clock."""
    del document["generated_at"]
    for source in document["sources"]:
        del source["next_cycle"]
        for site in source["sites"]:
            del site["age_seconds"]
    return document


def test_a_backup_asked_of_the_daemon_runs_there_and_reports_as_the_command_does(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _caught_up(setup, daemons)

    done = firebreak(setup.path, "-v", "backup", "www")
    assert done.returncode == 0, done.stderr
    assert "run by the daemon" in done.stderr
    assert re.search(r"www: success \(2 of 2 sites, cycle \d+\)", done.stdout), done.stdout
    assert "WARNING: placement policy is in warn mode" in done.stdout  # as the command says it
    assert "firebreak backup of www asked on the control socket" in daemon.log()
    cycles = _cycles(setup)
    assert [cycle.trigger for cycle in cycles] == ["catch-up", "cli"]
    assert len(_backups(setup, Status.SUCCESS)) == 4

    one = firebreak(setup.path, "-v", "backup", "www", "--site", "b")
    assert one.returncode == 0, one.stderr
    assert "run by the daemon" in one.stderr and "(1 of 1 site," in one.stdout
    assert [run.site for run in _backups(setup)][-1] == "b" and len(_backups(setup)) == 5

    # What the daemon does not take, the command runs itself, and says what is wrong.
    typo = firebreak(setup.path, "-v", "backup", "wwww")
    assert typo.returncode == 2
    assert "run by the daemon" not in typo.stderr
    assert "no source 'wwww'" in typo.stderr
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_ctrl_c_stops_the_backup_the_daemon_runs_for_it_and_the_daemon_goes_on(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _caught_up_slowly(setup, daemons)

    asked = subprocess.Popen(
        [sys.executable, "-m", "firebreak", "-c", str(setup.path), "-v", "backup", "www"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon.wait_for("the backup to start", lambda: bool(_backing_up(setup)))
    time.sleep(1)
    asked.send_signal(signal.SIGINT)
    out, err = asked.communicate(timeout=60)
    assert asked.returncode == 130, err
    assert "run by the daemon" in err and "SIGINT: stopping restic" in err
    assert re.search(r"www: interrupted", out), out
    assert not _backing_up(setup)
    assert _backups(setup)[-1].status == Status.INTERRUPTED

    # A command killed outright: the daemon stops the backup it was running for it.
    (setup.source_dir / "more.bin").write_bytes(os.urandom(3_000_000))
    killed = subprocess.Popen(
        [sys.executable, "-m", "firebreak", "-c", str(setup.path), "backup", "www"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon.wait_for("the next backup to start", lambda: bool(_backing_up(setup)))
    killed.kill()
    killed.wait()
    daemon.wait_for("restic to stop", lambda: not _backing_up(setup), 30)
    daemon.wait_for(
        "the run to be recorded", lambda: _backups(setup)[-1].status == Status.INTERRUPTED
    )
    # And the daemon goes on: the next backup asked of it succeeds.
    again = firebreak(setup.path, "-v", "backup", "www", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "run by the daemon" in again.stderr
    assert daemon.stop() == 0


def test_a_daemon_stopping_mid_backup_tells_the_command_its_runs_were_interrupted(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _caught_up_slowly(setup, daemons)
    asked = subprocess.Popen(
        [sys.executable, "-m", "firebreak", "-c", str(setup.path), "backup", "www"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon.wait_for("the backup to start", lambda: bool(_backing_up(setup)))
    assert daemon.stop() == 0
    out, err = asked.communicate(timeout=60)
    assert asked.returncode == 130, err
    assert re.search(r"www: interrupted", out), out + err
    assert _backups(setup)[-1].status == Status.INTERRUPTED


def _caught_up(setup: Setup, daemons: list[DaemonProcess]) -> DaemonProcess:
    """A daemon that has caught up on www at two local sites, a and b."""
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"], schedule="0 3 * * *")
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("the catch-up", lambda: len(_backups(setup, Status.SUCCESS)) == 2)
    return daemon


def _caught_up_slowly(setup: Setup, daemons: list[DaemonProcess]) -> DaemonProcess:
    """A daemon that has caught up on www at the slow site, with new data since: its next
    backup there takes about 10 s."""
    _slow_source(setup)
    setup.source("www", ["slow"], schedule="0 3 * * *")
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("the catch-up", lambda: bool(_backups(setup, Status.SUCCESS)), 90)
    (setup.source_dir / "more.bin").write_bytes(os.urandom(3_000_000))
    return daemon


def _cycles(setup: Setup) -> list[Cycle]:
    engine = make_engine(f"sqlite:///{Path(setup.top['state_dir']) / 'firebreak.db'}")
    try:
        with Session(engine) as session:
            return list(session.scalars(select(Cycle).order_by(Cycle.id)))
    finally:
        engine.dispose()


def test_a_backup_the_daemon_runs_draws_its_bars_on_the_commands_terminal(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    daemon = _caught_up_slowly(setup, daemons)
    done = on_a_terminal(setup.path, "-v", "backup", "www", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run by the daemon" in done.stdout  # script(1) merges stderr into the terminal
    assert "www → slow" in done.stdout
    assert re.search(r"\d\.\d/\d\.\d MiB", done.stdout), "no bar against what restic found"
    assert re.search(r"www: success \(1 of 1 site, cycle \d+\)", done.stdout)
    assert daemon.stop() == 0


def test_ctrl_c_stops_a_backup_waiting_for_a_run_slot_in_the_daemon(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    _slow_source(setup)
    setup.local_site("a")
    setup.source("www", ["slow"], schedule="0 3 * * *")
    setup.source("db", ["a"], schedule="every 24h")
    setup.top["max_parallel_runs"] = 1
    setup.top["daemon"] = {"catch_up_stagger": "1d"}  # db's catch-up waits a day
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("www's backup to start", lambda: bool(_backing_up(setup)))
    asked = subprocess.Popen(
        [sys.executable, "-m", "firebreak", "-c", str(setup.path), "-v", "backup", "db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon.wait_for(
        "db's backup to be asked for",
        lambda: "firebreak backup of db asked on the control socket" in daemon.log(),
    )
    time.sleep(1)  # its run waits for the one slot, which www's holds
    assert not [run for run in setup.runs() if run.source == "db"]
    stopped_at = time.monotonic()
    asked.send_signal(signal.SIGINT)
    _, err = asked.communicate(timeout=60)
    assert asked.returncode == 130, err
    assert "run by the daemon" in err
    assert time.monotonic() - stopped_at < 5, "it waited for www's backup to end"
    assert _backing_up(setup), "www's backup was stopped too"
    [db] = [run for run in setup.runs() if run.source == "db"]
    assert db.status == Status.INTERRUPTED
    assert db.error_message and "waiting for a run slot" in db.error_message
    assert daemon.stop() == 0


def test_a_restore_starts_restic_before_loading_the_rest_when_the_daemon_names_the_snapshot(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    _caught_up(setup, daemons)
    target = setup.dir / "restored"
    restore = ["-vv", "restore", "www", "--target", str(target)]

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "firebreak", "-c", str(setup.path), *restore],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    ahead = re.search(r"restic started at site (\w+), snapshot (\w+)", done.stderr)
    assert ahead, done.stderr[-3000:]
    site, snapshot = ahead.groups()
    assert done.stdout.startswith(f"restored www from site {site}: snapshot {snapshot} ")
    # restic was started before the history's libraries were imported, and taken over by
    # the run: one restic restore, no listing of the site.
    sqlalchemy = re.search(r"\|\s+sqlalchemy$", done.stderr, re.MULTILINE)
    assert sqlalchemy and ahead.start() < sqlalchemy.start()
    assert "(restic started ahead)" in done.stderr
    assert len(re.findall(r"started \S*restic restore", done.stderr)) == 1
    assert not re.search(r"started \S*restic snapshots", done.stderr)
    assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))
    [run] = [run for run in setup.runs() if run.operation == "restore"]
    assert (run.site, run.status, run.snapshot_id) == (site, Status.SUCCESS, snapshot)


def test_a_restic_started_ahead_at_a_site_whose_disk_is_gone_hands_over_to_the_next(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    _caught_up(setup, daemons)
    backup = firebreak(setup.path, "backup", "www", "--site", "a")  # a is now the freshest
    assert backup.returncode == 0, backup.stderr
    shutil.rmtree(setup.dir / "repo-a")  # its disk is not mounted
    target = setup.dir / "restored"

    done = firebreak(setup.path, "-v", "restore", "www", "--target", str(target))

    assert done.returncode == 0, done.stderr
    assert "restic started at site a" in done.stderr
    assert "(restic started ahead)" in done.stderr  # taken over, then failed
    assert done.stdout.startswith("restored www from site b: ")
    assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))
    assert not list(setup.dir.glob(".restored.firebreak-*"))
    runs = [(run.site, run.status) for run in setup.runs() if run.operation == "restore"]
    assert runs == [("a", Status.FAILED), ("b", Status.SUCCESS)]


def test_a_snapshot_the_daemon_names_but_forgotten_by_hand_is_not_what_is_restored(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    _caught_up(setup, daemons)
    older = {path: path.read_bytes() for path in setup.source_dir.rglob("*") if path.is_file()}
    (setup.source_dir / "docs" / "readme.txt").write_text("the newer one\n")
    assert firebreak(setup.path, "backup", "www", "--site", "a").returncode == 0
    [newest] = [r.snapshot_id for r in _backups(setup, site="a")][-1:]
    assert newest is not None
    assert firebreak(setup.path, "restic", "a", "forget", newest).returncode == 0
    target = setup.dir / "restored"

    done = firebreak(setup.path, "-v", "restore", "www", "--target", str(target))

    assert done.returncode == 0, done.stderr
    assert f"restic started at site a, snapshot {newest[:8]}" in done.stderr
    assert f"snapshot {newest[:8]}, the newest recorded here, is not at the site" in done.stderr
    assert done.stdout.startswith("restored www from site a: ")
    restored = target / setup.source_dir.relative_to("/")
    for path, content in older.items():
        assert (restored / path.relative_to(setup.source_dir)).read_bytes() == content


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_restore_stopped_before_its_run_begins_stops_the_restic_it_started_ahead(
    setup: Setup, daemons: list[DaemonProcess], sig: signal.Signals
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(3_000_000))
    setup.local_site("a", limit_download=300)  # a restore of about 10 s
    setup.source("www", ["a"], schedule="0 3 * * *")
    daemon = _start(setup, daemons)
    daemon.ready()
    daemon.wait_for("the catch-up", lambda: bool(_backups(setup, Status.SUCCESS)))
    state = Path(setup.top["state_dir"])
    said = setup.dir / "restore.err"
    restore = ["-v", "restore", "www", "--target", str(setup.dir / "restored")]
    with (state / "firebreak.db.migrate-lock").open("a") as migrating, said.open("w") as err:
        # A schema upgrade under way: the command waits for it before it records a run.
        fcntl.flock(migrating, fcntl.LOCK_EX)
        asked = subprocess.Popen(
            [sys.executable, "-m", "firebreak", "-c", str(setup.path), *restore],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        daemon.wait_for("restic started ahead", lambda: "restic started at" in said.read_text())
        assert restic_processes(str(state))
        asked.send_signal(sig)
        asked.wait(timeout=30)

    assert asked.returncode == 130, said.read_text()
    assert "interrupted before the restore began" in said.read_text()
    assert not restic_processes(str(state))
    assert not list(setup.dir.glob(".restored.firebreak-*"))
    assert not [run for run in setup.runs() if run.operation == "restore"]
