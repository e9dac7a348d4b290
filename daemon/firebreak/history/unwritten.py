"""What the history could not take when it happened (the database stopped answering): kept in
memory, in order, and written as soon as it answers again. A backup that ran while the history
was away is then recorded as it started and ended, not lost.

A row inserted while the history is away (a cycle or a run that starts then) gets a stand-in
id, a negative number, until it is written; writes kept after it that name it (the run's end,
a run of the cycle) are given its real id when they are written, in order. Only the daemon
keeps starts (``keep_starts``): a command run by hand refuses to start while the history is
away, as it would lose what it kept when it exits."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)

Write = Callable[[Engine], object]
# The history is away (not answering, locked, out of room, read-only): what waits, waits. Any
# other refusal is an answer about that write alone.
# (psycopg's read-only transaction, a standby after a failover, is an InternalError.)
AWAY = (OperationalError, InterfaceError, InternalError, PoolTimeout)
# What asking the history can raise when it cannot answer now: a database's error, or no
# connection to be had from the pool.
HISTORY_ERRORS = (DBAPIError, PoolTimeout)
T = TypeVar("T")


class NotWrittenYet(LookupError):
    """A row was asked for by its stand-in id while its insert still waits for the history."""


class Unwritten:
    """Writes waiting for the history, oldest first."""

    def __init__(self, *, keep_starts: bool = False) -> None:
        self.keep_starts = keep_starts
        self._lock = threading.Lock()  # the queue, held for no database I/O
        self._flushing = threading.Lock()  # one thread writes what waits at a time
        self._waiting: deque[tuple[str, Write]] = deque()
        self._stand_ins = 0
        self._ids: dict[int, int] = {}  # stand-in -> the id the history gave

    def __len__(self) -> int:
        return len(self._waiting)  # one read: a scrape never waits for a slow history

    def keep(self, what: str, write: Write, reason: str) -> None:
        """Keep a write the history refused; what says it in full (the journal holds it even
        if this process ends before the history comes back)."""
        with self._lock:
            self._waiting.append((what, write))
            waiting = len(self._waiting)
        log.error("the history is unavailable (%s); kept to write later: %s", reason, what)
        if waiting == 1:
            log.error("writes wait for the history from now on; none is lost while firebreak runs")

    def write(
        self,
        engine: Engine,
        write: Callable[[Engine], T],
        what: str,
        *,
        later: Write | None = None,
    ) -> T | None:
        """Write now, after what waits; when the history does not answer, keep it (or the
        write given as later) and return None."""
        reason = "writes before it still wait"
        if self.flush(engine):
            try:
                return write(engine)
            except (*HISTORY_ERRORS, NotWrittenYet) as exc:
                reason = refusal(exc)
        self.keep(what, later or write, reason)
        return None

    def insert(
        self,
        engine: Engine,
        insert: Callable[[Engine], int],
        what: str,
        *,
        found: Callable[[Engine], int | None],
    ) -> int:
        """Insert a row now, after what waits, and return its id; when the history does not
        answer, keep the insert and return a stand-in id for it (see ``real``); without
        keep_starts, raise the history's error instead.

        found: the row, if an insert that seemed to fail was committed after all (the
        connection lost between the commit and its answer): a kept insert asks it first, so
        that no row is written twice."""
        if not self.keep_starts:
            self.flush(engine)
            return insert(engine)
        with self._lock:
            self._stand_ins -= 1
            stand_in = self._stand_ins

        def inserted(engine: Engine) -> int:
            written = found(engine)
            if written is None:
                written = insert(engine)
            self._ids[stand_in] = written
            return written

        kept = f"{what} (numbered {stand_in} until then)"
        written = self.write(engine, insert, kept, later=inserted)
        return stand_in if written is None else written

    def real(self, row_id: int) -> int:
        """The history's id for a row (the row's own id, or the one its stand-in got when
        written). NotWrittenYet: a stand-in whose insert still waits."""
        if row_id >= 0:
            return row_id
        try:
            return self._ids[row_id]
        except KeyError:
            raise NotWrittenYet(f"row {row_id} is not in the history yet") from None

    def flush(self, engine: Engine, *, wait: bool = False) -> bool:
        """Write what waits, in order; False when the history still refuses (all stay), or
        when another thread is writing it now (without wait: this thread's write is kept
        behind it rather than wait for a history that may take its time to refuse)."""
        if not self._waiting:
            return True
        if not self._flushing.acquire(blocking=wait):
            return False
        written = 0
        try:
            while True:
                with self._lock:
                    if not self._waiting:
                        break
                    what, write = self._waiting[0]
                try:
                    write(engine)
                except AWAY:
                    return False
                except (DBAPIError, NotWrittenYet) as exc:  # it answers, and refuses this one:
                    log.error("dropped, the history refuses it (%s): %s", refusal(exc), what)
                except Exception:  # never to be written; it must not hold back the rest
                    log.exception("dropped, it cannot be written to the history: %s", what)
                else:
                    log.info("written to the history now: %s", what)
                    written += 1
                with self._lock:
                    self._waiting.popleft()
        finally:
            self._flushing.release()
        if written:
            log.warning("the history answers again: %d kept writes written", written)
        return True

    def abandoned(self) -> list[str]:
        """What still waits (a process that ends says it before it goes)."""
        with self._lock:
            return [what for what, _ in self._waiting]


def refusal(exc: Exception) -> str:
    """The database's own first line of why (no SQL, no parameters)."""
    said = getattr(exc, "orig", None) or exc
    return (str(said).strip().splitlines() or ["no answer"])[0]
