"""What the history could not take when it happened (the database stopped answering in the
middle of a cycle): kept in memory, in order, and written as soon as it answers again. A
backup that ran while the history was away is then recorded as it ended, not lost."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

Write = Callable[[Engine], object]
T = TypeVar("T")


class Unwritten:
    """Writes waiting for the history, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: deque[tuple[str, Write]] = deque()

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def keep(self, what: str, write: Write, reason: str) -> None:
        """Keep a write the history refused; what says it in full (the journal holds it even
        if this process ends before the history comes back)."""
        with self._lock:
            self._waiting.append((what, write))
            waiting = len(self._waiting)
        log.error("the history is unavailable (%s); kept to write later: %s", reason, what)
        if waiting == 1:
            log.error("writes wait for the history from now on; none is lost while firebreak runs")

    def write(self, engine: Engine, write: Callable[[Engine], T], what: str) -> T | None:
        """Write now, after what waits; when the history does not answer, keep it (None)."""
        reason = "writes before it still wait"
        if self.flush(engine):
            try:
                return write(engine)
            except DBAPIError as exc:
                reason = refusal(exc)
        self.keep(what, write, reason)
        return None

    def flush(self, engine: Engine) -> bool:
        """Write what waits, in order; False when the history still refuses (all stay)."""
        written = 0
        with self._lock:
            while self._waiting:
                what, write = self._waiting[0]
                try:
                    write(engine)
                except DBAPIError:
                    return False
                self._waiting.popleft()
                log.info("written to the history now: %s", what)
                written += 1
        if written:
            log.warning("the history answers again: %d kept writes written", written)
        return True

    def abandoned(self) -> list[str]:
        """What still waits (a process that ends says it before it goes)."""
        with self._lock:
            return [what for what, _ in self._waiting]


def refusal(exc: DBAPIError) -> str:
    """The database's own first line of why (no SQL, no parameters)."""
    return (str(exc.orig or exc).strip().splitlines() or ["no answer"])[0]
