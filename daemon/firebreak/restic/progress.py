"""Is restic getting anywhere? The stall detector's evidence: its output, and the bytes the
kernel saw it read and write (/proc/PID/io), for commands that print nothing while they work."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IO_PROGRESS_BYTES = 64 * 1024
# "Stat(<config/>) returned error, retrying after 1.3s: dial tcp ...: connection refused"
RETRYING = re.compile(r"\) returned error, retrying after [^:]*: (.*)")


@dataclass(frozen=True)
class IoCounters:
    """What the kernel counted for the restic process (/proc/PID/io): bytes it read and
    wrote through system calls, files and sockets alike."""

    read: int
    written: int


def read_io(pid: int) -> IoCounters | None:
    """The process's I/O counters, or None when the kernel does not show them."""
    try:
        text = Path(f"/proc/{pid}/io").read_text(encoding="ascii")
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return IoCounters(read=int(fields["rchar"]), written=int(fields["wchar"]))
    except (OSError, KeyError, ValueError):
        return None


class Progress:
    """Tracks whether a run is making progress, for the stall detector.

    restic prints ``status`` lines on a timer even when nothing moves, so only a status line
    whose counters changed, or any other output, counts as progress. So do IO_PROGRESS_BYTES
    read or written since the last progress (check, forget and restore before 0.16 print
    nothing while they work): a lock refresh sent into a dead connection is smaller than that.
    """

    def __init__(self) -> None:
        self.last_change = time.monotonic()
        self._last_counters: tuple[Any, ...] | None = None
        self._io_mark: int | None = None
        self._grown = 0
        # restic printed a status line: it reports its own progress.
        self.reports = False
        # The kernel would not show restic's I/O counters (an unusual /proc setup).
        self.io_blind = False

    @property
    def watchable(self) -> bool:
        """Whether silence can be told from stalling: a command that prints nothing while it
        works is watched only through its I/O counters."""
        return self.reports or not self.io_blind

    def saw_io(self, counters: IoCounters | None, printed: int) -> None:
        """printed: bytes restic wrote to its stdout and stderr, which are not progress."""
        if counters is None:
            if not self.io_blind:
                self.io_blind = True
                _warn_io_blind()
            return
        moved = counters.read + counters.written - printed
        if self._io_mark is None or moved - self._io_mark >= IO_PROGRESS_BYTES:
            self._io_mark = moved
            if moved:
                self.last_change = time.monotonic()

    def saw_growth(self, size: int) -> None:
        """size: what the run has written into its output file so far (any growth counts)."""
        if size > self._grown:
            self._grown = size
            self.last_change = time.monotonic()

    def saw(self, message: Any) -> None:
        """A line of output: a JSON value, or text. restic 0.18 and later retry a failed
        request for up to 15 minutes, saying so each time: that is no progress."""
        if isinstance(message, str) and RETRYING.search(message):
            return
        if isinstance(message, dict) and message.get("message_type") == "status":
            self.reports = True
            counters = tuple(
                message.get(key)
                for key in ("files_done", "bytes_done", "total_files", "total_bytes", "error_count")
            )
            if counters == self._last_counters:
                return
            self._last_counters = counters
        self.last_change = time.monotonic()


def sample_io(
    pid: int, progress: Progress, piped: list[int], on_io: Callable[[IoCounters], None] | None
) -> None:
    counters = read_io(pid)
    progress.saw_io(counters, printed=piped[0] + piped[1])
    if counters is not None and on_io is not None:
        on_io(counters)


@functools.cache
def _warn_io_blind() -> None:
    log.warning(
        "cannot read restic's I/O counters in /proc: commands that print nothing while they "
        "work (check, prune, restore on restic 0.14) are not watched for stalls, only timed"
    )
