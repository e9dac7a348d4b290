"""`make soak`: the daemon on a one-second schedule for SOAK_SECONDS (default 600), with faults
injected at random the whole time: the REST site stopped and started again, its link
blackholed (a network namespace of our own, as root), a local site's filesystem filled (a
small tmpfs, as root), the history's PostgreSQL stopped and started again (where PostgreSQL's
server is installed), restic SIGKILLed mid-backup, SIGHUP, source files changed. Then nothing
may be lost: every snapshot the history calls a success is
in its site's repository, the newest at every site restores whole, restic check passes there,
and no run is left running. The counts are printed; exit 1 on any loss.

Not part of `make test`: it takes minutes and its faults are random (SOAK_SEED repeats one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from firebreak.history.models import Cycle
from firebreak.history.records import all_runs
from firebreak.outcomes import Operation, Status
from tests.support.daemon import DaemonProcess, restic_processes
from tests.support.mounts import tmpfs
from tests.support.netns import FarRestServer, Link
from tests.support.restore import assert_same_tree, restore_snapshot
from tests.support.servers import PostgresCluster, RestServer, find_postgres_bindir
from tests.support.setup import Setup


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    seed = int(os.environ.get("SOAK_SEED", str(int(time.time()))))
    chance = random.Random(seed)
    print(f"soak: {seconds:.0f}s, seed {seed} (SOAK_SEED={seed} repeats it)", flush=True)
    with tempfile.TemporaryDirectory(prefix="firebreak-soak-") as scratch:
        work = Path(scratch)
        link = Link() if os.geteuid() == 0 else None
        if link is not None:
            link.create()
        try:
            return _soak(work, seconds, chance, link)
        finally:
            if link is not None:
                link.delete()


def _soak(work: Path, seconds: float, chance: random.Random, link: Link | None) -> int:
    setup = Setup(work)
    with ExitStack() as stack:
        rest: RestServer = (
            FarRestServer(link, work / "rest") if link is not None else RestServer(work / "rest")
        )
        rest.start()
        stack.callback(rest.stop)
        history = None
        if find_postgres_bindir() is not None:
            history = PostgresCluster(work / "pg")
            history.start()
            stack.callback(history.close)
            setup.top["database"] = {"url": history.create_database()}
        small = None
        if link is not None:  # root: a tmpfs can be mounted
            small = stack.enter_context(tmpfs(work / "small", size="512m"))
            setup.site("a", str(small / "repo"), stall_timeout="10s")
        else:
            setup.local_site("a", stall_timeout="10s")
        setup.local_site("b", stall_timeout="10s")
        setup.rest_site("r", rest, stall_timeout="10s")
        setup.source("www", ["a", "b", "r"], schedule="every 1s")
        setup.top["retry"] = {"attempts": 0}
        setup.top["daemon"] = {"shutdown_grace": "5s"}
        daemon = DaemonProcess(setup.write(), work, watchdog_usec=None)
        faults: Counter[str] = Counter()
        choices = _faults(setup, rest, daemon, link)
        if history is not None:
            choices.append(("history stopped", _stopped(history)))
        if small is not None:
            choices.append(("site a filled", _filled(small)))
        try:
            daemon.ready()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(chance.uniform(1, 6))
                name, fault = chance.choice(choices)
                fault(chance)
                faults[name] += 1
            rest.start()
            if link is not None:
                link.heal()
        finally:
            code = daemon.stop(timeout=120)
        found = _verify(setup, faults, code)
        if found != 0:  # the scratch directory goes: keep the daemon's log for the reader
            kept = Path(tempfile.gettempdir()) / f"firebreak-soak-{os.getpid()}.log"
            kept.write_text(daemon.log())
            print(f"soak: the daemon's log is in {kept}")
        return found
    raise AssertionError("unreachable")


def _faults(
    setup: Setup, rest: RestServer, daemon: DaemonProcess, link: Link | None
) -> list[tuple[str, Callable[[random.Random], None]]]:
    def outage(chance: random.Random) -> None:
        rest.stop()
        time.sleep(chance.uniform(1, 8))
        rest.start()

    def blackhole(chance: random.Random) -> None:
        assert link is not None
        link.blackhole()
        time.sleep(chance.uniform(2, 15))
        link.heal()

    def kill_restic(_chance: random.Random) -> None:
        for pid in restic_processes(str(setup.dir)):
            os.kill(pid, signal.SIGKILL)

    def reload(_chance: random.Random) -> None:
        daemon.signal(signal.SIGHUP)

    def edit(chance: random.Random) -> None:
        name = setup.source_dir / f"changing-{chance.randrange(20)}.bin"
        if name.exists() and chance.random() < 0.3:
            name.unlink()
        else:
            name.write_bytes(os.urandom(chance.randrange(1, 400_000)))

    faults = [
        ("REST site stopped", outage),
        ("restic SIGKILLed", kill_restic),
        ("SIGHUP", reload),
        ("source files changed", edit),
    ]
    if link is not None:
        faults.append(("REST site blackholed", blackhole))
    return faults


def _stopped(history: PostgresCluster) -> Callable[[random.Random], None]:
    def stop(chance: random.Random) -> None:
        # A clean shutdown: this cluster (fsync and synchronous_commit off) loses acknowledged
        # commits in a crash, which no client can tell; a lost answer is tested on its own.
        history.stop(mode="fast")
        time.sleep(chance.uniform(2, 20))
        history.start()

    return stop


def _filled(small: Path) -> Callable[[random.Random], None]:
    def fill(chance: random.Random) -> None:
        filler = small / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * (1 << 20))
            except OSError:  # ENOSPC: full
                pass
        time.sleep(chance.uniform(2, 10))
        filler.unlink()

    return fill


def _verify(setup: Setup, faults: Counter[str], exit_code: int) -> int:
    config = setup.load()
    engine = setup.runtime().engine
    runs = all_runs(engine)
    backups = [run for run in runs if run.operation == Operation.BACKUP]
    problems = [] if exit_code == 0 else [f"the daemon exited {exit_code}"]
    problems += [f"run {run.id} left running" for run in runs if run.status == Status.RUNNING]
    with Session(engine) as session:
        cycles = list(session.scalars(select(Cycle)))
    problems += [f"cycle {c.id} left running" for c in cycles if c.status == Status.RUNNING]
    orphans = {run.cycle_id for run in runs} - {c.id for c in cycles} - {None}
    problems += [f"runs of cycle {cycle}, which the history lacks" for cycle in sorted(orphans)]
    snapshots_checked = 0
    for site in config.sites:
        held = _snapshots(setup, site)
        claimed = {
            run.snapshot_id
            for run in backups
            if run.site == site and run.status in (Status.SUCCESS, Status.PARTIAL)
        }
        snapshots_checked += len(claimed)
        lost = sorted(s for s in claimed if s and s not in held)
        problems += [f"{site}: the history's snapshot {s} is not in the repository" for s in lost]
        problems += _restores_and_checks(setup, site, held)
    print("soak: faults injected:", dict(faults) or "none")
    print("soak: cycles:", dict(Counter(str(c.status) for c in cycles)))
    print("soak: runs:", dict(Counter(f"{r.operation} {r.status}" for r in runs)))
    print(f"soak: {snapshots_checked} successful snapshots looked for in their repositories")
    for problem in problems:
        print(f"soak: LOST OR WRONG: {problem}")
    print("soak: nothing lost" if not problems else f"soak: {len(problems)} problems")
    return 0 if not problems else 1


def _snapshots(setup: Setup, site: str) -> dict[str, str]:
    """The site's snapshots: short id → full id."""
    listed = _restic(setup, site, "snapshots", "--json")
    if listed.returncode != 0:
        raise RuntimeError(f"{site}: restic snapshots failed: {listed.stderr.strip()}")
    return {s["short_id"]: s["id"] for s in json.loads(listed.stdout or "[]")}


def _restores_and_checks(setup: Setup, site: str, held: dict[str, str]) -> list[str]:
    if not held:
        return [f"{site}: no snapshot at all"]
    # A restic SIGKILLed by the soak leaves its lock: stale, no loss (the daemon unlocks
    # before its next run there).
    _restic(setup, site, "unlock")
    checked = _restic(setup, site, "check")
    if checked.returncode != 0:
        return [f"{site}: restic check failed: {checked.stderr[-300:]}"]
    newest = json.loads(_restic(setup, site, "snapshots", "--json", "--latest", "1").stdout)[-1]
    target = setup.dir / f"restored-{site}"
    restore_snapshot(setup.load(), site, newest["id"], target)
    try:
        assert_same_tree(
            setup.source_dir / "docs", target / setup.source_dir.relative_to("/") / "docs"
        )
    except AssertionError as exc:
        return [f"{site}: the newest snapshot does not restore whole: {exc}"]
    return []


def _restic(setup: Setup, site: str, *args: str) -> subprocess.CompletedProcess[str]:
    repository = setup.sites[site]["repository"]
    return subprocess.run(
        [setup.restic, "-r", repository, "--no-cache", *args],
        env={**os.environ, "RESTIC_PASSWORD_FILE": str(setup.password_file)},
        capture_output=True,
        text=True,
        check=False,
    )


if __name__ == "__main__":
    sys.exit(main())
