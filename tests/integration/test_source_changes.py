"""Source files that change under restic's feet, for real: restic is paused (SIGSTOP) while it
reads the first file, files it has not reached yet vanish, grow, or become unreadable to root
(a write-only sysctl bind-mounted over one), and restic goes on. The run is partial and kept,
its snapshot holds what was there, and the other sites are unaffected."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from firebreak.actions.check import check_site
from firebreak.actions.cycle import run_cycle
from firebreak.outcomes import Status
from tests.support.setup import Setup

pytestmark = pytest.mark.root

WRITE_ONLY = Path("/proc/sys/vm/drop_caches")


@pytest.mark.restic_matrix
def test_files_that_vanish_grow_or_turn_unreadable_mid_backup_make_a_partial_snapshot(
    setup: Setup,
) -> None:
    if os.access(WRITE_ONLY, os.R_OK):
        pytest.skip(f"{WRITE_ONLY} is readable here")
    source = setup.source_dir
    # 4 GiB of holes: restic reads it for a few seconds, long enough to be caught at it on a
    # busy machine (1 GiB was missed once: that site's backup ended before any change).
    first = source / "a-first.sparse"
    with first.open("wb") as handle:
        handle.truncate(1 << 32)
    growing = source / "b-growing.log"
    growing.write_bytes(os.urandom(3_000_000))
    vanishing = source / "c-vanishing"
    vanishing.mkdir()
    for number in range(20):
        (vanishing / f"f{number:02}").write_text(f"{number}\n")
    unreadable = source / "d-turns-unreadable.txt"
    unreadable.write_text("readable when the backup started\n")
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    setup.top["max_parallel_runs"] = 1  # one restic at a time: each is paused in turn
    rt = setup.runtime()

    meddled: list[bool] = []

    def meddle() -> None:  # once: the second site's restic finds it done
        if not meddled:
            meddled.append(True)
            with growing.open("ab") as handle:
                handle.write(os.urandom(100_000))
            for number in range(0, 20, 2):
                (vanishing / f"f{number:02}").unlink()
            subprocess.run(["mount", "--bind", str(WRITE_ONLY), str(unreadable)], check=True)

    try:
        with _paused_while_reading(first, meddle) as paused:
            report = run_cycle(rt, "www")
    finally:
        subprocess.run(["umount", str(unreadable)], check=False)
    assert paused, "restic was never seen reading the first file"

    for run in report.runs:
        # restic saw at least the unreadable file, and wrote a snapshot all the same.
        assert (run.status, run.error_class, run.exit_code) == (Status.PARTIAL, "PartialBackup", 3)
        assert run.error_message and run.error_message.startswith(
            "snapshot written, but some files could not be read: "
        )
        assert run.snapshot_id
        held = _listed(setup, run.site, run.snapshot_id)
        # What restic had not reached is as it found it: the files left, and the log at
        # least as long as it was (and a prefix of what it is now).
        for number in range(1, 20, 2):
            assert f"{vanishing}/f{number:02}" in held
        log = _dumped(setup, run.site, run.snapshot_id, growing)
        assert len(log) >= 3_000_000 and growing.read_bytes().startswith(log)
        assert check_site(rt, run.site).status == Status.SUCCESS


def _restic(setup: Setup, site: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [setup.restic, "-r", str(setup.dir / f"repo-{site}"), "--no-cache", *args],
        env={**os.environ, "RESTIC_PASSWORD_FILE": str(setup.password_file)},
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done


def _listed(setup: Setup, site: str, snapshot: str) -> set[str]:
    return set(_restic(setup, site, "ls", snapshot).stdout.decode().splitlines())


def _dumped(setup: Setup, site: str, snapshot: str, path: Path) -> bytes:
    return _restic(setup, site, "dump", snapshot, str(path)).stdout


@contextmanager
def _paused_while_reading(path: Path, meddle: Callable[[], None]) -> Iterator[list[int]]:
    """Each process seen with path open is stopped, meddle() runs, and it goes on; yields the
    pids paused."""
    paused: list[int] = []
    over = threading.Event()

    def watch() -> None:
        while not over.is_set():
            pid = _reader_of(path)
            if pid is None or pid in paused:
                continue
            os.kill(pid, signal.SIGSTOP)
            paused.append(pid)
            try:
                meddle()
            finally:
                os.kill(pid, signal.SIGCONT)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield paused
    finally:
        over.set()
        watcher.join()


def _reader_of(path: Path) -> int | None:
    """The restic process with path open. Only restic's open files are looked through: on a
    busy machine a look through every process's could take longer than restic takes to read
    the file (restic 0.18 at one site was missed once, with 4 GiB to read)."""
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            if (process / "comm").read_text().strip() != "restic":
                continue
            if any(os.readlink(fd) == str(path) for fd in (process / "fd").iterdir()):
                return int(process.name)
        except OSError:
            continue
    time.sleep(0.005)
    return None
