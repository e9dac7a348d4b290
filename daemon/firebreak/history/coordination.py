"""One host at a time at a shared repository, across a fleet.

Hosts that back up into the same repository share nothing but the history's PostgreSQL. Work
that takes restic's exclusive lock (forget and prune, check) and creating a repository take
PostgreSQL's advisory lock on the repository's location first: session-level, so a daemon that
dies releases it with its connection. Backups take restic's shared lock and stay concurrent.

A SQLite history belongs to one host, whose site locks (actions/flocks.py) already serialise its
runs: there is no fleet to coordinate, and these locks are always free.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, select, text
from sqlalchemy.orm import Session

from firebreak.clock import utcnow
from firebreak.history.database import upsert
from firebreak.history.models import RepositoryLock

POLL_SECONDS = 0.5
# How long a host that found the lock taken waits for its holder's name (not for the lock).
NAMING_SECONDS = 2.0


@dataclass(frozen=True)
class Holder:
    host: str
    purpose: str
    since: datetime

    def __str__(self) -> str:
        return f"{self.host} ({self.purpose}, since {self.since:%Y-%m-%d %H:%M:%S} UTC)"


class RepositoryBusy(Exception):
    """Another host holds the repository (holder None: it let go before it could be named)."""

    def __init__(self, holder: Holder | None) -> None:
        super().__init__(f"held by {holder or 'another host'}")
        self.holder = holder


class WaitCancelled(Exception):
    """Stopped while waiting for another host to let go of the repository."""


def shared(engine: Engine) -> bool:
    """Whether the history may be shared by several hosts (PostgreSQL)."""
    return engine.dialect.name == "postgresql"


@contextmanager
def repository_lock(
    engine: Engine,
    repository: str,
    *,
    host: str,
    purpose: str,
    patience: float | None,
    cancel: threading.Event | None = None,
) -> Iterator[None]:
    """Hold the fleet's lock on the repository. patience: how many seconds to wait for it
    (None: until it is free; 0: not at all), then RepositoryBusy, naming who holds it;
    WaitCancelled when cancel is set meanwhile."""
    if not shared(engine):
        yield
        return
    key = _key(repository)
    deadline = None if patience is None else time.monotonic() + patience
    with engine.connect() as connection:
        while not _try(connection, key):
            if deadline is not None and time.monotonic() >= deadline:
                raise RepositoryBusy(_named_holder(engine, repository))
            if cancel is not None and cancel.wait(POLL_SECONDS):
                raise WaitCancelled(f"stopped while waiting for {holder(engine, repository)}")
            if cancel is None:
                threading.Event().wait(POLL_SECONDS)
        try:
            with Session(engine) as session, session.begin():
                values = {"host": host, "purpose": purpose[:255], "since": utcnow()}
                upsert(session, RepositoryLock, {"repository": repository}, values, values)
            yield
        finally:
            try:
                with Session(engine) as session, session.begin():
                    session.execute(
                        delete(RepositoryLock).where(
                            RepositoryLock.repository == repository, RepositoryLock.host == host
                        )
                    )
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()


def holder(engine: Engine, repository: str) -> Holder | None:
    """Who holds the repository's lock, as its holder recorded it."""
    with Session(engine) as session:
        row = session.scalar(select(RepositoryLock).where(RepositoryLock.repository == repository))
        return None if row is None else Holder(row.host, row.purpose, row.since)


def _named_holder(engine: Engine, repository: str) -> Holder | None:
    """The holder, once it has written its name: it takes the lock, then names itself, so a
    host that finds the lock taken may look in between (seen on a loaded machine)."""
    deadline = time.monotonic() + NAMING_SECONDS
    while (found := holder(engine, repository)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _try(connection: Connection, key: int) -> bool:
    taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
    connection.commit()  # no transaction stays open while the lock is held or awaited
    return bool(taken)


def _key(repository: str) -> int:
    """The advisory lock's 64-bit key for a repository location (beside MIGRATION_LOCK's)."""
    digest = hashlib.sha256(f"firebreak repository {repository}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
