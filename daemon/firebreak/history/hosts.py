"""Heartbeats: each daemon records when it was last seen, and what its config asks of its
sources (metrics/profile.py, as JSON), in the ``hosts`` table. A fleet exporter and
``firebreak status --fleet`` read it; nothing in a host's own work depends on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from firebreak.clock import utcnow
from firebreak.history.database import upsert
from firebreak.history.models import Host

# A host is silent when this many of its heartbeats are missing.
MISSED_BEATS = 3


def beat(
    engine: Engine,
    host: str,
    *,
    started_at: datetime,
    interval: timedelta,
    version: str,
    pid: int | None,
    profile: str,
) -> None:
    """The host's daemon is alive now (it was started at started_at)."""
    values = {
        "started_at": started_at,
        "last_seen_at": utcnow(),
        "interval_seconds": interval.total_seconds(),
        "stopped_at": None,
        "version": version,
        "pid": pid,
        "profile": profile,
    }
    with Session(engine) as session, session.begin():
        upsert(session, Host, {"host": host}, values, values)


def stopped(engine: Engine, host: str) -> None:
    """The host's daemon stopped on request: silent from now on, and said to be stopped."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        session.execute(
            update(Host).where(Host.host == host).values(stopped_at=now, last_seen_at=now)
        )


def forget(engine: Engine, host: str) -> bool:
    """A host is gone for good: it leaves the fleet's view (its runs stay). Whether it was
    known."""
    with Session(engine) as session, session.begin():
        known = session.get(Host, host) is not None
        session.execute(delete(Host).where(Host.host == host))
    return known


@dataclass(frozen=True)
class HostState:
    host: str
    started_at: datetime
    last_seen_at: datetime
    interval_seconds: float
    stopped_at: datetime | None
    version: str
    pid: int | None
    profile: str

    def silent(self, now: datetime) -> bool:
        """Its daemon missed MISSED_BEATS heartbeats, or stopped."""
        late = timedelta(seconds=MISSED_BEATS * self.interval_seconds)
        return self.stopped_at is not None or now - self.last_seen_at > late


def hosts(engine: Engine) -> list[HostState]:
    """Every host whose daemon ever beat, by name."""
    with Session(engine) as session:
        return [
            HostState(
                row.host,
                row.started_at,
                row.last_seen_at,
                row.interval_seconds,
                row.stopped_at,
                row.version,
                row.pid,
                row.profile,
            )
            for row in session.scalars(select(Host).order_by(Host.host))
        ]
