"""Timing whole processes for ``make bench``: wall time and peak resident size, from outside."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Timing:
    seconds: float
    peak_rss_kib: int


def timed(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Timing:
    """Wall time, and the peak resident size of the largest process in the tree; what it
    writes on stderr goes to log (kept) or to a file read only if it fails."""
    with (
        log.open("w+b") if log is not None else tempfile.TemporaryFile() as errors
    ):  # a file, not a pipe: a chatty command must not fill one and wait forever
        started = time.monotonic()
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace")[-4000:]
            raise SystemExit(f"{shlex.join(argv)} exited {code}:\n{said}")
    return Timing(seconds, usage.ru_maxrss)


def parallel(commands: list[list[str]], env: dict[str, str]) -> Timing:
    """Several restic processes at once (what a cycle does), timed as one; fails if any did."""
    started = [f"{shlex.join(argv)} & p{n}=$!" for n, argv in enumerate(commands)]
    waits = " && ".join(f"wait $p{n}" for n in range(len(commands)))
    return timed(["sh", "-ec", "; ".join([*started, waits])], env)


def serial(commands: list[list[str]], env: dict[str, str]) -> Timing:
    """The same commands one after the other, as a shell loop would run them."""
    return timed(["sh", "-ec", " && ".join(shlex.join(argv) for argv in commands)], env)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """A running process's user and system time so far, and that of its children it has
    reaped (restic's, for the daemon), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def restic_version(restic: str) -> str:
    done = subprocess.run([restic, "version"], capture_output=True, text=True, check=False)
    return done.stdout.split()[1] if done.stdout else "?"
