"""``make bench``: what firebreak costs on top of restic, measured side by side.

Each scenario runs plain restic the way a sysadmin would script it and firebreak doing the same
work, on the same data, in the same repositories, and prints the median wall time of each and
their ratio. Sizes come from the environment:

    BENCH_MB       megabytes of random data in the source (default 256)
    BENCH_FILES    small files beside it (default 5000)
    BENCH_REPEAT   runs per scenario, the median is printed (default 3)
    BENCH_DIR      where to work (default: a temporary directory, removed after)

Nothing here asserts a time: the numbers are for people (see docs/development.md).
"""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.setup import Setup

SITES = ("a", "b", "c")


@dataclass(frozen=True)
class Timing:
    seconds: float
    peak_rss_kib: int


def _timed(argv: list[str], env: dict[str, str] | None = None) -> Timing:
    """Wall time, and the peak resident size of the largest process in the tree."""
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        error = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"{shlex.join(argv)} exited {process.returncode}:\n{error}")
    return Timing(seconds, usage.ru_maxrss)


def _parallel(commands: list[list[str]], env: dict[str, str]) -> Timing:
    """Several restic processes at once (what a cycle does), timed as one; fails if any did."""
    started = [f"{shlex.join(argv)} & p{n}=$!" for n, argv in enumerate(commands)]
    waits = " && ".join(f"wait $p{n}" for n in range(len(commands)))
    return _timed(["sh", "-ec", "; ".join([*started, waits])], env)


def _side_by_side(
    runs: int,
    plain: Callable[[], Timing],
    ours: list[Callable[[], Timing]],
    before: Callable[[], None],
) -> list[Timing]:
    """Median of each, the runs taken in turn (plain, ours, plain, ours...) so that both see
    the same page cache, writeback and machine load."""
    measures = [plain, *ours]
    timings: list[list[Timing]] = [[] for _ in measures]
    for _ in range(runs):
        for measure, taken in zip(measures, timings, strict=True):
            before()
            taken.append(measure())
            if os.environ.get("BENCH_VERBOSE"):
                print(f"  {taken[-1].seconds:.2f}s", flush=True)
    return [
        Timing(statistics.median(t.seconds for t in taken), max(t.peak_rss_kib for t in taken))
        for taken in timings
    ]


def _source(root: Path, megabytes: int, files: int) -> Path:
    data = root / "data"
    (data / "small").mkdir(parents=True)
    chunk = 16 * 1024 * 1024
    left = megabytes * 1024 * 1024
    number = 0
    while left > 0:
        (data / f"big-{number}.bin").write_bytes(os.urandom(min(chunk, left)))
        left -= chunk
        number += 1
    for index in range(files):
        (data / "small" / f"{index:06}.txt").write_bytes(os.urandom(index % 4096))
    return data


def main() -> None:
    megabytes = int(os.environ.get("BENCH_MB", "256"))
    files = int(os.environ.get("BENCH_FILES", "5000"))
    runs = int(os.environ.get("BENCH_REPEAT", "3"))
    given = os.environ.get("BENCH_DIR")
    work = Path(given) if given else Path(tempfile.mkdtemp(prefix="firebreak-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        _bench(work, megabytes, files, runs)
    finally:
        if not given:
            shutil.rmtree(work, ignore_errors=True)


def _bench(work: Path, megabytes: int, files: int, runs: int) -> None:
    setup = Setup(work)
    source = _source(work, megabytes, files)
    for name in SITES:
        setup.local_site(name)
    setup.source("data", list(SITES), paths=[str(source)])
    # The same parallelism as the plain restic baseline: every site at once.
    setup.top["max_parallel_runs"] = len(SITES)
    setup.top["max_parallel_local_runs"] = len(SITES)  # as plain restic, three at once
    config = setup.write()
    firebreak = [sys.executable, "-m", "firebreak", "-c", str(config)]
    restic = shutil.which("restic") or "restic"
    env = {**os.environ, "RESTIC_PASSWORD_FILE": str(setup.password_file)}
    repositories = [str(work / f"repo-{name}") for name in SITES]
    cache = str(work / "restic-cache")
    print(f"restic {_restic_version(restic)}; {megabytes} MB + {files} small files; ", end="")
    print(f"median of {runs}; {os.cpu_count()} cores", flush=True)

    def fresh_repositories() -> None:
        for repository in repositories:
            shutil.rmtree(repository, ignore_errors=True)
            subprocess.run(
                [restic, "-r", repository, "init", "-q", "--cache-dir", cache],
                env=env,
                check=True,
                capture_output=True,
            )

    def plain_backup() -> Timing:
        return _parallel(
            [
                [restic, "-r", repository, "--cache-dir", cache, "backup", "-q", str(source)]
                for repository in repositories
            ],
            env,
        )

    def nothing() -> None:
        pass

    results: list[tuple[str, Timing, Timing]] = []
    backup = [*firebreak, "backup", "data"]
    plain_first, ours_first = _side_by_side(
        runs, plain_backup, [lambda: _timed(backup)], fresh_repositories
    )
    results.append(("backup to 3 sites, first", plain_first, ours_first))
    plain_again, ours_again = _side_by_side(runs, plain_backup, [lambda: _timed(backup)], nothing)
    results.append(("backup to 3 sites, unchanged", plain_again, ours_again))

    target = work / "restored"

    def empty_target() -> None:
        shutil.rmtree(target, ignore_errors=True)
        for staging in work.glob(".restored.firebreak-*"):
            shutil.rmtree(staging, ignore_errors=True)
        os.sync()  # the last run's writeback must not slow the next one

    plain = [
        restic,
        "-r",
        repositories[0],
        "--cache-dir",
        cache,
        "restore",
        "latest",
        "--target",
        str(target),
        "--verify",
    ]
    ours = [*firebreak, "restore", "data", "--site", "a", "--target", str(target)]
    # On a terminal firebreak lists the snapshot beside the restore for its progress bar.
    on_terminal = ["script", "-qefc", shlex.join(ours), "/dev/null"]
    plain_restore, our_restore, bar_restore = _side_by_side(
        runs,
        lambda: _timed(plain, env),
        [lambda: _timed(ours), lambda: _timed(on_terminal)],
        empty_target,
    )
    results.append(("restore, verified", plain_restore, our_restore))
    results.append(("restore on a terminal (bar)", plain_restore, bar_restore))
    _report(results)


def _restic_version(restic: str) -> str:
    done = subprocess.run([restic, "version"], capture_output=True, text=True, check=False)
    return done.stdout.split()[1] if done.stdout else "?"


def _report(results: list[tuple[str, Timing, Timing]]) -> None:
    print()
    header = f"{'scenario':32} {'restic':>9} {'firebreak':>10} {'ratio':>6}"
    print(header + f" {'peak RSS restic':>16} {'firebreak':>10}")
    for name, plain, ours in results:
        print(
            f"{name:32} {plain.seconds:8.2f}s {ours.seconds:9.2f}s "
            f"{ours.seconds / plain.seconds:6.2f} "
            f"{plain.peak_rss_kib / 1024:13.0f} MiB {ours.peak_rss_kib / 1024:6.0f} MiB"
        )


if __name__ == "__main__":
    main()
