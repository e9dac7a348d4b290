"""The run history tables. Every restic operation is a row, from ``running`` to its end."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from firebreak.outcomes import Status


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no time zones), always returned as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the run history; use UTC-aware values")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Cycle(Base):
    """One backup of one source to all of its sites."""

    __tablename__ = "cycles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))  # cli, schedule, catch-up
    host: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=Status.RUNNING)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sites_total: Mapped[int] = mapped_column(Integer, default=0)
    sites_succeeded: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        # A source's newest finished cycle (catch-up), and the one before a given cycle.
        Index("ix_cycles_host_source_started", "host", "source", "started_at"),
        Index("ix_cycles_host_source_id", "host", "source", "id"),
    )


class Run(Base):
    """One restic operation of one source at one site."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cycle_id: Mapped[int | None] = mapped_column(
        ForeignKey("cycles.id", ondelete="SET NULL"), nullable=True
    )
    # None for an operation on the whole repository (check, site reset), whatever source.
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    site: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(32))  # backup, init, forget, check, ...
    status: Mapped[str] = mapped_column(String(16), default=Status.RUNNING)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_class: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(512), nullable=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    files_new: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    files_changed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    files_unmodified: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_added: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_processed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    repository_initialized: Mapped[bool] = mapped_column(default=False)
    restic_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        # The runs of one series, by outcome: the failures since a success are a range of it.
        Index("ix_runs_series_status", "host", "operation", "source", "site", "status", "id"),
        Index("ix_runs_cycle", "cycle_id"),
        # One host's runs at one site, newest first (what it last wrote there); and retention,
        # which walks a host's runs from the oldest.
        Index("ix_runs_host_site", "host", "site", "id"),
        Index("ix_runs_host_started", "host", "started_at"),
    )


class Series(Base):
    """One host's operation of one source at one site (source "": the whole repository, a
    check), and where its newest runs are. Kept as runs start and end (history/series.py), so
    reading the latest state of every series is one seek per series, however long the history;
    and retention never deletes a run a series points at."""

    __tablename__ = "series"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The newest run, whatever its status (a running one included).
    last_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_success_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_success_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The newest run with a verdict on the data: it passed, or found the data bad.
    last_verdict_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The newest run that met the site's repository, or found it gone or replaced.
    last_identity_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Failed runs since the last success.
    failures: Mapped[int] = mapped_column(Integer, default=0)


class RunTotal(Base):
    """How many runs of a series ended with a status, and their durations in the
    histogram's buckets: the counters and the histogram, which neither a scrape recomputes
    from the whole history nor retention makes go backwards."""

    __tablename__ = "run_totals"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    # The histogram bucket the durations fall in (its upper bound, as Prometheus writes it).
    le: Mapped[str] = mapped_column(String(16), primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class SiteRepository(Base):
    """The restic repository firebreak found at a repository location the first time it wrote
    there, or one an operator recorded later (``firebreak site reset``): the newest row per
    location is the repository that must be there, whichever host or site name asks."""

    __tablename__ = "site_repositories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    site: Mapped[str] = mapped_column(String(64))
    # Where: the site's repository, normalised, credentials removed (placement.targets).
    repository: Mapped[str] = mapped_column(String(1024))
    repository_id: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # None when firebreak recorded it on its own; the operator's words for a reset.
    reason: Mapped[str | None] = mapped_column(String(512), nullable=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )

    __table_args__ = (Index("ix_site_repositories_repository", "repository", "id"),)


class Host(Base):
    """A daemon's heartbeat: when each host's daemon was last seen, and what its config asks
    of its sources (so a fleet exporter can judge the freshness of a host that went silent)."""

    __tablename__ = "hosts"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # How often it beats: it is silent after three beats missed.
    interval_seconds: Mapped[float] = mapped_column(Float)
    # Set when the daemon stopped on request (a silent host that was stopped, not lost).
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[str] = mapped_column(String(32))
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Its sources' objectives and sites' schedules (metrics/profile.py), as JSON.
    profile: Mapped[str] = mapped_column(Text)


class RepositoryLock(Base):
    """Who holds the fleet's lock on a repository (history/coordination.py): the lock itself is
    PostgreSQL's advisory lock, this row only names its holder for those who wait or skip."""

    __tablename__ = "repository_locks"

    repository: Mapped[str] = mapped_column(String(1024), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(255))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
