"""``make bench``: firebreak beside plain restic, and every target of docs/performance.md judged.

    python -m tests.benchmarks.bench [--small]

One run, in this order:

1. the CLI: ``firebreak --version``, ``--help``, and ``firebreak status`` on a 10 000-run
   history, answered by the daemon running that config (and, reported beside it, read by
   status itself with no daemon);
2. backups to three local sites of a seeded dataset (dataset.py: about 1 GiB, 20 MiB with
   --small): a first, an incremental and an unchanged one, each by ``firebreak backup`` (the
   default limits; run by a daemon running the config, as where firebreak is installed), a
   serial loop of ``restic backup``, three ``restic backup`` at once and one site alone,
   each into repositories of its own, the rounds taken in turn with the order rotated; and
   what firebreak adds to the restic runs it starts (its wall time less the span from its
   first restic backup's start to its last one's end, from the daemon's log), and beside
   it what it adds with no daemon running;
3. a restore from a local site by firebreak (a daemon running the config names the
   snapshot) and by plain restic: the time to the first byte written, and to the end; and
   beside them firebreak's with no daemon running;
4. the daemon over a first cycle and (not with --small) an unchanged one: its own CPU
   against its restic processes';
5. network.py (three REST sites behind slow links: root only, not with --small), idle.py
   (the daemon at rest) and history.py (a scrape and status on 1 M runs; 10 000 with
   --small);

then every target's verdict. BENCH_REPEAT rounds (default 3; medians), BENCH_DIR to work in
a directory that is kept (what an earlier run left there is removed first). Nothing here asserts a time: ``make test`` runs ``--small`` once so
that this cannot rot, and looks only at whether every target was judged.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from firebreak.history.database import make_engine
from tests.benchmarks import history, idle, network
from tests.benchmarks.dataset import Dataset, generate
from tests.benchmarks.measure import (
    Timing,
    cpu_seconds,
    parallel,
    restic_version,
    serial,
    timed,
)
from tests.benchmarks.verdicts import judge, skipped, summary
from tests.support.daemon import DaemonProcess
from tests.support.servers import free_port
from tests.support.setup import Setup

SITES = ("a", "b", "c")
IDLE = "idle"  # a tiny source, and its site, for the daemon to catch up on (_Local)
FIREBREAK = "firebreak backup"
SERIAL = "a serial loop (restic)"
PARALLEL = "three at once (restic)"
ALONE = "one site alone (restic)"
WAYS = (FIREBREAK, SERIAL, PARALLEL, ALONE)
# Local sites: firebreak's wall time against a serial loop of restic backup (issue 17).
LOCAL_TARGETS = {"first": 1.0, "incremental": 0.75, "unchanged": 0.65}
ADDED_TARGET = 0.3
FIRST_BYTE_TARGET = 1.5
CLI_TARGETS = {"--version": 0.1, "--help": 0.1, "status": 0.35}
CYCLE_CPU_TARGET = 2.0
CLI_RUNS = 7
# Each part's directory under the bench's own.
PARTS = ("dataset", "cli", "local", "restore", "daemon")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench")
    parser.add_argument("--small", action="store_true", help="a 20 MiB dataset: a smoke run")
    small = parser.parse_args(argv).small
    rounds = int(os.environ.get("BENCH_REPEAT", "3"))
    given = os.environ.get("BENCH_DIR")
    work = Path(given) if given else Path(tempfile.mkdtemp(prefix="firebreak-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for earlier in PARTS:  # what an earlier run in BENCH_DIR left
        shutil.rmtree(work / earlier, ignore_errors=True)
    restic = shutil.which("restic") or "restic"
    try:
        began = time.monotonic()
        dataset = generate(work / "dataset", small=small)
        print(
            f"restic {restic_version(restic)}; {os.cpu_count()} cores; median of {rounds} "
            f"rounds; dataset: {dataset.describe()} (made in {time.monotonic() - began:.1f} s)",
            flush=True,
        )
        _cli(work / "cli", rounds)
        local = _Local(work / "local", dataset, restic)
        try:
            local.bench(rounds)
            _restore(work / "restore", local, rounds)
        finally:
            local.stop_daemon()
        _daemon(work / "daemon", dataset, cycles=1 if small else 2)
        if small:
            skipped(network.TARGET_NAME, "not with --small")
        else:
            network.main()
        idle.main(small=small)
        history.main(small=small)
    finally:
        if not given:
            shutil.rmtree(work, ignore_errors=True)
    print(summary())


def _firebreak(config: Path) -> list[str]:
    return [sys.executable, "-m", "firebreak", "-c", str(config)]


def _cli(work: Path, rounds: int) -> None:
    """--version, --help and status on a 10 000-run history, whole processes, taken in turn;
    then status again while a daemon runs that config (it answers, daemon/control.py)."""
    print("\nthe CLI (whole processes):", flush=True)
    work.mkdir()
    database = work / "history.db"
    engine = make_engine(f"sqlite:///{database}")
    history.fill(engine, 10_000)
    history.upgrade(engine)
    engine.dispose()
    data = history.config_data()
    data.update(
        state_dir=str(work / "state"),
        database={"url": f"sqlite:///{database}"},
        # The history's sites are paths on one disk, and nothing is due: the daemon only
        # answers.
        placement={"enforce": "warn"},
        metrics={"listen": f"127.0.0.1:{free_port()}"},
    )
    config = work / "firebreak.yaml"
    config.write_text(json.dumps(data))
    commands = {
        "--version": [*_firebreak(config), "--version"],
        "--help": [*_firebreak(config), "--help"],
        "status": [*_firebreak(config), "status"],
    }
    runs = max(rounds, CLI_RUNS)
    taken: dict[str, list[float]] = {what: [] for what in commands}
    for _ in range(runs):
        for what, argv in commands.items():
            taken[what].append(timed(argv).seconds)
    alone = statistics.median(taken.pop("status"))
    daemon = DaemonProcess(config, work, watchdog_usec=None)
    try:
        daemon.ready()
        asked = subprocess.run(
            [*_firebreak(config), "-v", "status"], capture_output=True, text=True, check=False
        )
        if "answered by the daemon" not in asked.stderr:
            raise SystemExit(f"the daemon did not answer status:\n{asked.stderr[-2000:]}")
        taken["status"] = [timed(commands["status"]).seconds for _ in range(runs)]
    finally:
        daemon.stop()
    print(f"  firebreak status with no daemon running: {alone:.2f} s (it reads the history)")
    for what, limit in CLI_TARGETS.items():
        label = f"firebreak {what}" + (" (10 000 runs)" if what == "status" else "")
        judge(label, statistics.median(taken[what]), limit, " s")


class _Local:
    """Three local sites, and for each way of backing up to them repositories of its own."""

    def __init__(self, work: Path, dataset: Dataset, restic: str) -> None:
        self.work, self.dataset, self.restic = work, dataset, restic
        work.mkdir()
        self.setup = Setup(work)
        for name in SITES:
            self.setup.local_site(name)
        # firebreak backup is run by a daemon running this config, as on a host where
        # firebreak is installed. A fresh history makes the daemon catch up at once on every
        # source, a day apart: the first is a tiny one, and data's catch-up never comes.
        self.setup.local_site(IDLE)
        idle = work / "idle"
        idle.mkdir()
        (idle / "file").write_text("idle\n")
        self.setup.source(IDLE, [IDLE], paths=[str(idle)])
        self.setup.top["daemon"] = {"catch_up_stagger": "1d"}
        self.setup.source("data", list(SITES), paths=[str(dataset.root)])
        self.daemon: DaemonProcess | None = None
        self.env = {**os.environ, "RESTIC_PASSWORD_FILE": str(self.setup.password_file)}
        self.repositories = {
            FIREBREAK: [site["repository"] for site in self.setup.sites.values()],
            SERIAL: [str(work / "serial" / name) for name in SITES],
            PARALLEL: [str(work / "parallel" / name) for name in SITES],
            ALONE: [str(work / "alone" / "a")],
        }
        self.config = self.setup.write()
        self.states = 0
        self.added: list[float] = []  # what firebreak added to its restic runs, each backup
        self.started_daemon()

    def started_daemon(self) -> None:
        """A daemon on the current config, once it has caught up on the tiny source."""
        self.stop_daemon()
        self.daemon = DaemonProcess(self.config, self.work, watchdog_usec=None, verbose=2)
        self.daemon.ready()
        self.daemon.wait_for(
            "the catch-up of the tiny source",
            lambda: any(run.source == IDLE and run.finished_at for run in self.setup.runs()),
        )

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def fresh(self, way: str) -> None:
        """Empty repositories for way (created untimed, by restic for every way); firebreak
        also gets a history of its own, since these are not the repositories it knew."""
        for repository in self.repositories[way]:
            shutil.rmtree(repository, ignore_errors=True)
            self._restic(repository, "init", "-q")
        if way == FIREBREAK:
            self.states += 1
            self.setup.top["state_dir"] = str(self.work / f"state-{self.states}")
            self.config = self.setup.write()
            self.started_daemon()

    def _restic(self, repository: str, *args: str) -> None:
        argv = [self.restic, "-r", repository, "--cache-dir", str(self.work / "cache"), *args]
        subprocess.run(argv, env=self.env, check=True, capture_output=True)

    def backup_argv(self, repository: str) -> list[str]:
        cache = str(self.work / "cache")
        source = str(self.dataset.root)
        return [self.restic, "-r", repository, "--cache-dir", cache, "backup", "-q", source]

    def backup(self, way: str) -> Timing:
        commands = [self.backup_argv(repository) for repository in self.repositories[way]]
        if way == SERIAL:
            return serial(commands, self.env)
        if way == PARALLEL:
            return parallel(commands, self.env)
        if way == ALONE:
            return timed(commands[0], self.env)
        assert self.daemon is not None
        before = len(self.daemon.log())
        log = self.work / "firebreak.log"
        taken = timed([*_firebreak(self.config), "-v", "backup", "data"], log=log)
        if "run by the daemon" not in log.read_text():
            raise SystemExit(f"the daemon did not run firebreak backup:\n{log.read_text()}")
        self.added.append(taken.seconds - _restic_span(self.daemon.log()[before:]))
        return taken

    def added_alone(self, rounds: int) -> float:
        """What firebreak backup adds with no daemon running (an unchanged backup, run in
        its own process): the median of rounds."""
        self.stop_daemon()
        added = []
        log = self.work / "firebreak.log"
        for _ in range(rounds):
            taken = timed([*_firebreak(self.config), "-vv", "backup", "data"], log=log)
            added.append(taken.seconds - _restic_span(log.read_text()))
        return statistics.median(added)

    def bench(self, rounds: int) -> None:
        print(f"\nbackups to three local sites ({self.dataset.describe()}):", flush=True)
        print(f"  {'':12}" + "".join(f"{way:>25}" for way in WAYS) + f"{'firebreak/loop':>16}")
        verdicts: list[tuple[str, float, float]] = []
        for scenario, limit in LOCAL_TARGETS.items():
            taken: dict[str, list[float]] = {way: [] for way in WAYS}
            for round_ in range(rounds):
                if scenario == "incremental":
                    self.dataset.change(round_)
                for way in WAYS[round_ % 4 :] + WAYS[: round_ % 4]:
                    if scenario == "first":
                        self.fresh(way)
                    os.sync()  # the last measure's writeback must not slow this one
                    taken[way].append(self.backup(way).seconds)
            medians = {way: statistics.median(seconds) for way, seconds in taken.items()}
            ratio = medians[FIREBREAK] / medians[SERIAL]
            cells = "".join(f"{medians[way]:24.2f}s" for way in WAYS)
            print(f"  {scenario:12}{cells}{ratio:16.2f}", flush=True)
            verdicts.append((f"local sites, {scenario} backup: × a serial loop", ratio, limit))
        alone = self.added_alone(rounds)
        print(
            f"  firebreak backup with no daemon running adds {alone:.2f} s "
            "(an unchanged backup, in its own process)"
        )
        for target, ratio, limit in verdicts:
            judge(target, ratio, limit)
        added = statistics.median(self.added)
        judge("firebreak backup: time added to its restic runs", added, ADDED_TARGET, " s")


def _restic_span(log: str) -> float:
    """Seconds from the first restic backup's start to the last one's end, in firebreak's -vv
    log (its lines begin with their local time, to the millisecond; the runner's say when it
    started a restic and when that restic ended, reaped and read to its last line)."""
    starts, ends = [], []
    for line in log.splitlines():
        if re.search(r"started \S*restic backup ", line):
            starts.append(_log_time(line))
        elif re.search(r"restic backup \(pid \d+\) ended", line):
            ends.append(_log_time(line))
    if not starts or not ends:
        raise SystemExit(f"no restic backup in firebreak's log:\n{log[-2000:]}")
    return max(ends) - min(starts)


def _log_time(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _restore(work: Path, local: _Local, rounds: int) -> None:
    """Rounds of firebreak restore with no daemon running; then, with a daemon running the
    config (as on an installed host: it names the snapshot, and restic starts before the
    rest of firebreak is loaded), firebreak restore and plain restic restore in turn."""
    print("\na restore from local site a:", flush=True)
    work.mkdir()
    target = work / "restored"
    ours = [*_firebreak(local.config), "-v", "restore", "data", "--site", "a"]
    ours += ["--target", str(target)]
    repository = local.repositories[FIREBREAK][0]
    plain = [
        local.restic,
        "-r",
        repository,
        "--cache-dir",
        str(local.work / "cache"),
        "restore",
        "latest",
        "--target",
        str(target),
        "--verify",
    ]
    alone = "with no daemon running"
    taken: dict[str, list[tuple[float, float]]] = {
        "firebreak restore": [],
        "restic restore": [],
        alone: [],
    }

    def measure(what: str) -> None:
        for old in work.iterdir():
            shutil.rmtree(old, ignore_errors=True)
        os.sync()
        argv, env = (plain, local.env) if what == "restic restore" else (ours, None)
        first, whole, said = _first_byte(argv, env, work)
        if what == "firebreak restore" and "restic started at site a" not in said:
            raise SystemExit(f"firebreak restore did not start restic ahead:\n{said[-2000:]}")
        taken[what].append((first, whole))

    local.stop_daemon()
    for _ in range(rounds):
        measure(alone)
    local.started_daemon()
    try:
        for round_ in range(rounds):
            ways = ["firebreak restore", "restic restore"]
            for what in ways[round_ % 2 :] + ways[: round_ % 2]:
                measure(what)
    finally:
        local.stop_daemon()
    for what, times in taken.items():
        first = statistics.median(first for first, _ in times)
        whole = statistics.median(whole for _, whole in times)
        label = f"firebreak restore {what}" if what == alone else what
        print(f"  {label:<40} first byte {first:6.2f} s   all of it {whole:6.2f} s", flush=True)
    first = statistics.median(first for first, _ in taken["firebreak restore"])
    judge("firebreak restore: first byte written", first, FIRST_BYTE_TARGET, " s")


def _first_byte(
    argv: list[str], env: dict[str, str] | None, watched: Path
) -> tuple[float, float, str]:
    """Seconds until a file under watched (the target, or firebreak's staging directory
    beside it) holds a byte, and until the command ends; and what it said on stderr."""
    with tempfile.TemporaryFile() as errors:
        started = time.monotonic()
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        first = None
        while process.poll() is None:
            if first is None and _holds_a_byte(watched):
                first = time.monotonic() - started
            time.sleep(0.005)
        whole = time.monotonic() - started
        errors.seek(0)
        said = errors.read().decode(errors="replace")
        if process.returncode != 0:
            raise SystemExit(f"{argv} exited {process.returncode}:\n{said}")
    return (first if first is not None else whole), whole, said


def _holds_a_byte(root: Path) -> bool:
    folders = [str(root)]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False) and entry.stat().st_size > 0:
                        return True
                except FileNotFoundError:
                    continue
    return False


def _daemon(work: Path, dataset: Dataset, cycles: int) -> None:
    """The daemon's own CPU over its cycles (the first is catch-up's: the source never ran),
    against the CPU of the restic processes it ran, both from /proc."""
    print("\nthe daemon over a cycle to three local sites:", flush=True)
    work.mkdir()
    setup = Setup(work)
    for name in SITES:
        setup.local_site(name)
    setup.source("data", list(SITES), paths=[str(dataset.root)], schedule="every 10s")
    daemon = DaemonProcess(setup.write(), work, watchdog_usec=None)
    try:
        daemon.ready(timeout=120)
        for number, what in zip(range(cycles), ("a first", "an unchanged"), strict=False):
            started = _when_logged(daemon, " of data to ", number + 1)
            ended = _when_logged(daemon, " of data: ", number + 1)
            own = ended[0] - started[0]
            restic = ended[1] - started[1]
            print(
                f"  {what} cycle: firebreak {own:.2f} s of CPU, its restic processes "
                f"{restic:.2f} s",
                flush=True,
            )
            judge(
                f"daemon CPU over {what} cycle, % of restic's",
                100 * own / restic,
                CYCLE_CPU_TARGET,
                " %",
            )
    finally:
        daemon.stop()


def _when_logged(daemon: DaemonProcess, text: str, count: int) -> tuple[float, float]:
    """The daemon's own CPU seconds and its reaped children's, once its log has said text
    count times (looked at every 10 ms)."""
    deadline = time.monotonic() + 900
    while daemon.log().count(text) < count:
        if daemon.process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the daemon never logged {text!r} {count} times:\n{daemon.log()}")
        time.sleep(0.01)
    return cpu_seconds(daemon.pid)


if __name__ == "__main__":
    main()
