"""A dump under the faults the world brings: one that hangs or stalls, two cycles of one
source at once, a daemon stopped or killed mid-dump, and its after hooks on the way out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firebreak.outcomes import Status
from tests.support.cli import firebreak
from tests.support.daemon import DaemonProcess
from tests.support.setup import Setup

pytestmark = pytest.mark.slow


def _program(setup: Setup, name: str, body: str) -> list[str]:
    """A dump program: a Python script (one process: nothing of it outlives a SIGKILL)."""
    script = setup.dir / name
    script.write_text(body)
    return [sys.executable, str(script)]


# Writes a little, notes that it is running, then hangs: a dump whose server went quiet.
HANGS = """\
import sys, time
sys.stdout.write("x" * 100_000)
sys.stdout.flush()
open(sys.argv[0] + ".running", "w").close()
time.sleep(600)
"""


def test_a_dump_that_stalls_or_runs_too_long_fails_everywhere_in_time(setup: Setup) -> None:
    setup.local_site("a")
    setup.local_site("b")
    hangs = _program(setup, "hangs.py", HANGS)
    setup.source(
        "stalls",
        ["a", "b"],
        paths=[],
        command=hangs,
        stdin_filename="out",
        dump_stall_timeout="2s",
    )
    # Writes steadily, so never stalls, but takes far longer than its dump_timeout.
    slow = _program(
        setup,
        "slow.py",
        "import sys, time\nfor _ in range(600):\n"
        "    sys.stdout.write('y' * 1000); sys.stdout.flush(); time.sleep(0.1)\n",
    )
    setup.source(
        "slow", ["a", "b"], paths=[], command=slow, stdin_filename="out", dump_timeout="3s"
    )
    config = setup.write()
    name = Path(sys.executable).name
    for source, says in (
        ("stalls", f"the command {name} made no progress for 2s"),
        ("slow", f"the dump did not end within its dump_timeout of 3s (the command {name}"),
    ):
        started = time.monotonic()
        done = firebreak(config, "backup", source)
        assert done.returncode == 4, done.stdout + done.stderr
        assert time.monotonic() - started < 40
        runs = [r for r in setup.runs() if r.source == source]
        assert {r.site for r in runs} == {"a", "b"}
        assert {(r.status, r.error_class) for r in runs} == {(Status.FAILED, "DumpFailed")}
        assert says in (runs[0].error_message or ""), runs[0].error_message
    assert not (setup.dir / "repo-a").exists(), "a cut-short dump was stored"
    assert not list((setup.dir / "state" / "dumps").iterdir())


def test_two_cycles_of_one_dump_source_take_turns_with_its_stage(setup: Setup) -> None:
    journal = setup.dir / "journal"
    dump = _program(
        setup,
        "dump.py",
        "import sys, time\n"
        f"open({str(journal)!r}, 'a').write('start\\n')\n"
        "time.sleep(2)\n"
        "sys.stdout.write('data')\n"
        f"open({str(journal)!r}, 'a').write('end\\n')\n",
    )
    setup.local_site("a")
    setup.source("app", ["a"], paths=[], command=dump, stdin_filename="data")
    config = setup.write()
    command = [sys.executable, "-m", "firebreak", "-c", str(config), "backup", "app"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    assert journal.read_text().splitlines() == ["start", "end", "start", "end"]
    backups = [r.status for r in setup.runs() if r.operation == "backup"]
    assert backups == [Status.SUCCESS, Status.SUCCESS]


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def test_a_daemon_stopped_mid_dump_runs_its_after_hooks_and_a_killed_one_leaves_no_stage(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    journal = setup.dir / "journal"
    record = setup.dir / "record"
    record.write_text(f'#!/bin/sh\necho "$FIREBREAK_PHASE $FIREBREAK_OUTCOME" >> {journal}\n')
    record.chmod(0o755)
    hangs = _program(setup, "hangs.py", HANGS)
    running = Path(hangs[1] + ".running")
    setup.local_site("a")
    setup.source(
        "app",
        ["a"],
        paths=[],
        command=hangs,
        stdin_filename="out",
        schedule="0 3 * * *",  # never run before: caught up at start
        # The second after hook outlives the daemon's grace: it is stopped, and the failure
        # hook after it is not started, so the daemon still stops in time.
        hooks={"after": [[str(record)], ["sleep", "600"]], "on_failure": [[str(record)]]},
    )
    setup.top["daemon"] = {"shutdown_grace": "3s"}
    stage = setup.dir / "state" / "dumps" / "app"

    # Stopped: the dump is stopped, the stage removed, the run interrupted, and the after
    # hooks (which undo what the before hooks did) still run.
    daemon = DaemonProcess(setup.write(), setup.dir)
    daemons.append(daemon)
    daemon.ready()
    daemon.wait_for("the dump to run", running.exists)
    assert (stage / "out").exists()
    stopping = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - stopping < 3 + 10 + 5  # grace, the hook's SIGINT, a margin
    assert journal.read_text().splitlines() == ["after interrupted"]
    assert "on_failure hook 1 and after: not run, firebreak is stopping" in daemon.log()
    assert not stage.exists()
    [run] = setup.runs()
    assert (run.status, run.error_class) == (Status.INTERRUPTED, "Interrupted")

    # Killed: nothing runs on the way out, and the stage stays behind, as large as the
    # dump was; the next start removes it before anything else.
    running.unlink()
    killed = DaemonProcess(setup.write(), setup.dir)
    daemons.append(killed)
    killed.ready()
    killed.wait_for("the dump to run", running.exists)
    killed.signal(signal.SIGKILL)
    killed.process.wait(10)
    assert (stage / "out").exists()
    setup.sources["app"]["command"] = [sys.executable, "-c", "print('small')"]
    again = DaemonProcess(setup.write(), setup.dir)
    daemons.append(again)
    again.ready()
    assert f"removing {stage}, left by a firebreak that was stopped mid-cycle" in again.log()
    again.wait_for("the next cycle", lambda: any(r.status == Status.SUCCESS for r in setup.runs()))
    assert again.stop() == 0
    assert not stage.exists()


def test_a_failure_inside_firebreak_still_records_every_site_and_runs_the_after_hooks(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firebreak.actions import cycle

    journal = setup.dir / "journal"
    record = setup.dir / "record"
    record.write_text(
        f'#!/bin/sh\necho "$FIREBREAK_OUTCOME $FIREBREAK_FAILED_SITES" >> {journal}\n'
    )
    record.chmod(0o755)
    setup.local_site("a")
    setup.local_site("b")
    setup.source(
        "app",
        ["a", "b"],
        paths=[],
        command=["echo", "data"],
        stdin_filename="data",
        hooks={"after": [[str(record)]]},
    )
    rt = setup.runtime()

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in firebreak")

    # What no real fault produces on demand: firebreak's own code failing mid-cycle.
    monkeypatch.setattr(cycle, "staged_dump", broken)
    with pytest.raises(RuntimeError):
        cycle.run_cycle(rt, "app")
    runs = setup.runs()
    assert {(r.site, r.status, r.error_class) for r in runs} == {
        ("a", Status.FAILED, "InternalError"),
        ("b", Status.FAILED, "InternalError"),
    }
    assert journal.read_text() == "failed a,b\n"


def test_a_database_server_stopped_mid_dump_fails_every_site_and_stores_nothing(
    setup: Setup, tmp_path: Path
) -> None:
    from tests.support.servers import PostgresCluster, ServerUnavailable

    cluster = PostgresCluster(tmp_path / "pg")
    try:
        cluster.start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        cluster.create_database("big")
        # Enough rows that pg_dump takes a while: it is stopped in the middle.
        subprocess.run(
            [
                "psql",
                cluster.dsn("big"),
                "--quiet",
                "--command",
                "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS body "
                "FROM generate_series(1, 1500000) g",
            ],
            check=True,
            timeout=300,
        )
        for site in ("a", "b", "c"):
            setup.local_site(site)
        setup.source(
            "big",
            ["a", "b", "c"],
            paths=[],
            postgresql={
                "databases": ["big"],
                "host": "127.0.0.1",
                "port": cluster.port,
                "user": "postgres",
            },
        )
        config = setup.write()
        command = [sys.executable, "-m", "firebreak", "-c", str(config), "backup", "big"]
        backup = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        dump = setup.dir / "state" / "dumps" / "big" / "big.pgdump"
        deadline = time.monotonic() + 120
        while not dump.exists() and time.monotonic() < deadline and backup.poll() is None:
            time.sleep(0.05)
        assert dump.exists(), "the dump never started"
        cluster.stop()  # the server goes away mid-dump
        out, _ = backup.communicate(timeout=120)
    finally:
        cluster.close()
    assert backup.returncode == 4, out
    runs = [r for r in setup.runs() if r.operation == "backup"]
    assert {r.site for r in runs} == {"a", "b", "c"}
    assert {(r.status, r.error_class) for r in runs} == {(Status.FAILED, "DumpFailed")}
    assert "pg_dump of big exited 1" in (runs[0].error_message or ""), runs[0].error_message
    assert not any((setup.dir / f"repo-{site}").exists() for site in ("a", "b", "c"))
    assert not (setup.dir / "state" / "dumps" / "big").exists()
