"""One restic process per site at a time, across threads and processes on this host.

The lock is ``flock`` on ``STATE_DIR/locks/SITE.lock``: the daemon's cycles and a
``firebreak backup`` started by hand share it (they share the config's state_dir), so a manual
run waits for the daemon's run on the same site, and the other way round. The file holds the
owner's pid and what it runs, for the "waiting for" message. Hosts that share a repository are
coordinated by ``repository_turn`` instead (actions/locks.py).

The same kind of lock, in folders of their own under ``STATE_DIR/locks``, keeps two cycles of
one dump source out of each other's stage, two drills out of one scratch database, and two
restores out of one target. Standard library only: ``firebreak restore`` takes its lock
before it loads the rest of firebreak.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class LockWaitCancelled(Exception):
    """Stopped while waiting for a site's lock."""


@contextmanager
def site_lock(
    locks_dir: Path, site: str, purpose: str, cancel: threading.Event | None = None
) -> Iterator[None]:
    locks_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    path = locks_dir / f"{site}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        if not _try_lock(fd):
            log.info("site %s is busy (%s); waiting for it", site, _owner(path) or "another run")
            while not _try_lock(fd):
                if cancel is not None and cancel.wait(POLL_SECONDS):
                    raise LockWaitCancelled(f"stopped while waiting for site {site}")
                if cancel is None:
                    threading.Event().wait(POLL_SECONDS)
        with _held(fd, purpose):
            yield
    finally:
        os.close(fd)


@contextmanager
def if_free(locks_dir: Path, name: str, purpose: str) -> Iterator[bool]:
    """The lock if nobody holds it, without waiting: yields whether it was taken."""
    locks_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(locks_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        if not _try_lock(fd):
            yield False
            return
        with _held(fd, purpose):
            yield True
    finally:
        os.close(fd)


@contextmanager
def _held(fd: int, purpose: str) -> Iterator[None]:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {purpose}\n".encode(), 0)
    try:
        yield
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _owner(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
