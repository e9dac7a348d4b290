"""Writing and reading the run history. The only module that issues queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from firebreak.clock import utcnow
from firebreak.history.models import Cycle, Run, SiteRepository
from firebreak.outcomes import (
    Failure,
    Interrupted,
    Operation,
    Status,
    data_verdicts,
    site_losses,
)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended; what ``finish_run`` writes."""

    status: Status
    exit_code: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    snapshot_id: str | None = None
    files_new: int | None = None
    files_changed: int | None = None
    files_unmodified: int | None = None
    bytes_added: int | None = None
    bytes_processed: int | None = None
    repository_initialized: bool = False

    @classmethod
    def failed(cls, failure: Failure, exit_code: int | None = None) -> RunOutcome:
        """How a run that ended in this failure is recorded (stopped on request:
        ``interrupted``)."""
        return cls(
            failure.status,
            exit_code=failure.exit_code if exit_code is None else exit_code,
            error_class=failure.error_class,
            error_message=failure.message,
        )


def start_cycle(engine: Engine, *, source: str, trigger: str, host: str, sites: int) -> int:
    with Session(engine) as session, session.begin():
        return _inserted(
            session,
            Cycle(
                source=source,
                trigger=trigger,
                host=host,
                status=Status.RUNNING,
                started_at=utcnow(),
                sites_total=sites,
                sites_succeeded=0,
            ),
        )


def finish_cycle(engine: Engine, cycle_id: int, *, status: Status, succeeded: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(Cycle)
            .where(Cycle.id == cycle_id)
            .values(status=status, finished_at=utcnow(), sites_succeeded=succeeded)
        )


def start_run(
    engine: Engine,
    *,
    source: str | None,
    site: str,
    operation: Operation,
    host: str,
    restic_version: str | None,
    cycle_id: int | None = None,
    pid: int | None = None,
) -> int:
    """Record a run as ``running`` before restic starts."""
    with Session(engine) as session, session.begin():
        return _inserted(
            session,
            Run(
                cycle_id=cycle_id,
                source=source,
                site=site,
                operation=operation,
                status=Status.RUNNING,
                started_at=utcnow(),
                host=host,
                restic_version=restic_version,
                pid=pid,
                repository_initialized=False,
            ),
        )


def _inserted(session: Session, row: Cycle | Run) -> int:
    """Add the row and return the id the database gave it."""
    session.add(row)
    session.flush()
    return row.id


def finish_run(engine: Engine, run_id: int, outcome: RunOutcome) -> Run:
    """Record how a run ended; returns the finished row (detached)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        run = session.get_one(Run, run_id)
        now = utcnow()
        run.status = outcome.status
        run.finished_at = now
        run.duration_seconds = (now - run.started_at).total_seconds()
        run.exit_code = outcome.exit_code
        run.error_class = outcome.error_class
        run.error_message = _fit(outcome.error_message, Run.error_message.type.length)
        run.snapshot_id = outcome.snapshot_id
        run.files_new = outcome.files_new
        run.files_changed = outcome.files_changed
        run.files_unmodified = outcome.files_unmodified
        run.bytes_added = outcome.bytes_added
        run.bytes_processed = outcome.bytes_processed
        run.repository_initialized = outcome.repository_initialized
        return run


def _fit(text: str | None, length: int | None) -> str | None:
    """Messages are cut to their column (PostgreSQL refuses longer ones, SQLite keeps them)."""
    if text is None or length is None or len(text) <= length:
        return text
    return text[: length - 1] + "…"


@dataclass(frozen=True)
class Latest:
    """The newest run and the newest successful run of one source (None: any) at one site."""

    source: str | None
    site: str
    last_attempt: Run | None
    last_success: Run | None


def latest_runs(
    engine: Engine,
    operation: Operation = Operation.BACKUP,
    sources: Iterable[str] | None = None,
    *,
    host: str,
) -> dict[tuple[str, str], Latest]:
    """Latest attempt and latest success per (source, site) of this host: two indexed
    group-by queries. (Another host's source of the same name is another source.)"""
    wanted = (Run.operation == operation) & (Run.host == host)
    if sources is not None:
        wanted &= Run.source.in_(list(sources))
    attempts = _by_source(_newest(engine, wanted, Run.source, Run.site))
    successes = _by_source(
        _newest(engine, wanted & (Run.status == Status.SUCCESS), Run.source, Run.site)
    )
    return {
        key: Latest(key[0], key[1], attempts.get(key), successes.get(key))
        for key in attempts.keys() | successes.keys()
    }


def latest_site_runs(engine: Engine, operation: Operation, *, host: str) -> dict[str, Latest]:
    """Latest attempt and latest success of this host per site, whatever source a run was
    recorded under (for operations on the whole repository: check)."""
    wanted = (Run.operation == operation) & (Run.host == host)
    attempts = {r.site: r for r in _newest(engine, wanted, Run.site)}
    successes = {
        r.site: r for r in _newest(engine, wanted & (Run.status == Status.SUCCESS), Run.site)
    }
    return {
        site: Latest(None, site, attempts.get(site), successes.get(site))
        for site in attempts.keys() | successes.keys()
    }


def _newest(
    engine: Engine, condition: ColumnElement[bool], *group: InstrumentedAttribute[Any]
) -> list[Run]:
    """The newest run meeting the condition in each group (an indexed group-by, then the rows)."""
    newest = select(func.max(Run.id)).where(condition).group_by(*group)
    with Session(engine, expire_on_commit=False) as session:
        runs = list(session.scalars(select(Run).where(Run.id.in_(newest))))
        session.expunge_all()
    return runs


def first_successes(engine: Engine, *, host: str) -> dict[tuple[str, str], datetime]:
    """When this host's oldest recorded successful backup of each source at each site
    started (a site's drills are overdue some days after it, even if none ever ran)."""
    wanted = (
        (Run.operation == Operation.BACKUP) & (Run.status == Status.SUCCESS) & (Run.host == host)
    )
    oldest = select(func.min(Run.id)).where(wanted).group_by(Run.source, Run.site)
    query = select(Run.source, Run.site, Run.started_at).where(Run.id.in_(oldest))
    with Session(engine) as session:
        return {
            (source, site): started
            for source, site, started in session.execute(query)
            if source is not None
        }


def _by_source(runs: Iterable[Run]) -> dict[tuple[str, str], Run]:
    return {(run.source, run.site): run for run in runs if run.source is not None}


def runs_of_cycle(engine: Engine, cycle_id: int) -> list[Run]:
    with Session(engine, expire_on_commit=False) as session:
        runs = list(session.scalars(select(Run).where(Run.cycle_id == cycle_id).order_by(Run.id)))
        session.expunge_all()
    return runs


def all_runs(engine: Engine) -> list[Run]:
    """Every run, oldest first (tests and exports)."""
    with Session(engine, expire_on_commit=False) as session:
        runs = list(session.scalars(select(Run).order_by(Run.id)))
        session.expunge_all()
    return runs


def last_cycle_starts(engine: Engine, *, host: str) -> dict[str, datetime]:
    """When each of this host's sources' newest finished cycle started, failed or not; an
    interrupted one does not count (its work is still to be done)."""
    finished = (Status.SUCCESS, Status.PARTIAL, Status.FAILED)
    newest = func.max(Cycle.started_at)
    query = (
        select(Cycle.source, newest)
        .where(Cycle.status.in_(finished), Cycle.host == host)
        .group_by(Cycle.source)
    )
    with Session(engine) as session:
        return {source: started for source, started in session.execute(query) if started}


def interrupt_leftovers(
    engine: Engine, host: str, still_running: Callable[[int | None], bool]
) -> list[Run]:
    """Runs and cycles this host left ``running`` (a daemon that was killed or crashed)
    become ``interrupted``, unless their process is still at work."""
    message = "firebreak stopped before this run ended (found when the daemon started)"
    with Session(engine, expire_on_commit=False) as session, session.begin():
        leftovers = [
            run
            for run in session.scalars(
                select(Run).where(Run.status == Status.RUNNING, Run.host == host)
            )
            if not still_running(run.pid)
        ]
        now = utcnow()
        for run in leftovers:
            run.status = Status.INTERRUPTED
            run.finished_at = now
            run.duration_seconds = (now - run.started_at).total_seconds()
            run.error_class = Interrupted.error_class
            run.error_message = message
        session.flush()
        busy_cycles = select(Run.cycle_id).where(
            Run.status == Status.RUNNING, Run.cycle_id.is_not(None)
        )
        session.execute(
            update(Cycle)
            .where(
                Cycle.status == Status.RUNNING,
                Cycle.host == host,
                Cycle.id.not_in(busy_cycles),
            )
            .values(status=Status.INTERRUPTED, finished_at=now)
        )
        session.expunge_all()
    return leftovers


@dataclass(frozen=True)
class RunCount:
    source: str | None  # None: a run of the whole repository (check)
    site: str
    operation: str
    status: str
    count: int


def run_counts(engine: Engine, *, host: str) -> list[RunCount]:
    """This host's finished runs by source, site, operation and status (the counters)."""
    query = (
        select(Run.source, Run.site, Run.operation, Run.status, func.count())
        .where(Run.status != Status.RUNNING, Run.host == host)
        .group_by(Run.source, Run.site, Run.operation, Run.status)
    )
    with Session(engine) as session:
        return [RunCount(*row) for row in session.execute(query)]


def consecutive_failures(
    engine: Engine, operation: Operation = Operation.BACKUP, *, host: str
) -> dict[tuple[str, str], int]:
    """This host's failed runs since its last success, per (source, site)."""
    success = aliased(Run)
    last_success = (
        select(func.coalesce(func.max(success.id), 0))
        .where(
            success.host == host,
            success.source == Run.source,
            success.site == Run.site,
            success.operation == operation,
            success.status == Status.SUCCESS,
        )
        .scalar_subquery()
    )
    query = (
        select(Run.source, Run.site, func.count())
        .where(
            Run.host == host,
            Run.operation == operation,
            Run.status == Status.FAILED,
            Run.id > last_success,
        )
        .group_by(Run.source, Run.site)
    )
    with Session(engine) as session:
        return {
            (source, site): count
            for source, site, count in session.execute(query)
            if source is not None
        }


def finished_durations(engine: Engine, *, host: str) -> list[tuple[str, float]]:
    """(operation, seconds) of every finished run of this host, for the duration histogram."""
    query = select(Run.operation, Run.duration_seconds).where(
        Run.duration_seconds.is_not(None), Run.host == host
    )
    with Session(engine) as session:
        return [
            (op, float(seconds)) for op, seconds in session.execute(query) if seconds is not None
        ]


def previous_cycle_status(engine: Engine, source: str, before: int, *, host: str) -> Status | None:
    """How this host's source's last finished cycle before cycle ``before`` ended."""
    finished = (Status.SUCCESS, Status.PARTIAL, Status.FAILED)
    query = (
        select(Cycle.status)
        .where(
            Cycle.source == source,
            Cycle.host == host,
            Cycle.id < before,
            Cycle.status.in_(finished),
        )
        .order_by(Cycle.id.desc())
        .limit(1)
    )
    with Session(engine) as session:
        status = session.scalar(query)
    return Status(status) if status else None


def finished_runs(engine: Engine, site: str, operation: Operation, *, host: str) -> int:
    """How many of this host's runs of this operation at this site have ended, whatever
    their outcome."""
    query = select(func.count()).where(
        Run.site == site,
        Run.operation == operation,
        Run.status != Status.RUNNING,
        Run.host == host,
    )
    with Session(engine) as session:
        return int(session.scalar(query) or 0)


def _data_verdict() -> ColumnElement[bool]:
    """A run that passed, or found the data bad (a failure that ``judges_data``): runs that
    could not even reach the site say nothing either way."""
    return (Run.status == Status.SUCCESS) | (
        (Run.status == Status.FAILED) & Run.error_class.in_(data_verdicts())
    )


def latest_verdicts(
    engine: Engine, operation: Operation, *, host: str
) -> dict[tuple[str, str], Run]:
    """Per (source, site), this host's newest run of this operation with a verdict on the
    data."""
    condition = (Run.operation == operation) & _data_verdict() & (Run.host == host)
    return _by_source(_newest(engine, condition, Run.source, Run.site))


def latest_site_verdicts(engine: Engine, operation: Operation, *, host: str) -> dict[str, Run]:
    """Per site, this host's newest run of this operation with a verdict on the data,
    whichever source it was recorded under (a check covers the whole repository; another
    host's site of the same name may be another repository)."""
    condition = (Run.operation == operation) & _data_verdict() & (Run.host == host)
    return {run.site: run for run in _newest(engine, condition, Run.site)}


def recorded_repository(engine: Engine, repository: str) -> SiteRepository | None:
    """The restic repository that must be at this location: the newest one recorded there."""
    query = (
        select(SiteRepository)
        .where(SiteRepository.repository == repository)
        .order_by(SiteRepository.id.desc())
        .limit(1)
    )
    with Session(engine, expire_on_commit=False) as session:
        row = session.scalar(query)
        session.expunge_all()
    return row


def record_repository(
    engine: Engine,
    *,
    host: str,
    site: str,
    repository: str,
    repository_id: str,
    run_id: int | None,
    reason: str | None = None,
) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            SiteRepository(
                host=host,
                site=site,
                repository=repository,
                repository_id=repository_id,
                recorded_at=utcnow(),
                reason=_fit(reason, SiteRepository.reason.type.length),
                run_id=run_id,
            )
        )


def had_repository(engine: Engine, repository: str, host: str, site: str) -> bool:
    """Whether a repository was ever recorded at this location (by any host), or this host
    ever wrote a backup to the site (before repositories were recorded): a repository missing
    there now is lost, not new."""
    if recorded_repository(engine, repository) is not None:
        return True
    return last_written_snapshot(engine, host, site) is not None


def last_processed_bytes(engine: Engine, source: str, *, host: str) -> int | None:
    """How much this host's source's newest successful backup read (for a dump: its size)."""
    query = (
        select(Run.bytes_processed)
        .where(
            Run.source == source,
            Run.host == host,
            Run.operation == Operation.BACKUP,
            Run.status == Status.SUCCESS,
            Run.bytes_processed.is_not(None),
        )
        .order_by(Run.id.desc())
        .limit(1)
    )
    with Session(engine) as session:
        return session.scalar(query)


def last_written_snapshot(engine: Engine, host: str, site: str) -> str | None:
    """The snapshot of this host's newest successful backup at the site, from before
    repositories were recorded: what the repository there must still hold."""
    query = (
        select(Run.snapshot_id)
        .where(
            Run.host == host,
            Run.site == site,
            Run.operation == Operation.BACKUP,
            Run.status.in_((Status.SUCCESS, Status.PARTIAL)),
            Run.snapshot_id.is_not(None),
        )
        .order_by(Run.id.desc())
        .limit(1)
    )
    with Session(engine) as session:
        return session.scalar(query)


# The runs that look at which repository they met (actions/identity.py); an unlock or an init
# succeeds whatever repository is there and proves nothing.
_JUDGED = (
    Operation.BACKUP,
    Operation.CHECK,
    Operation.DRILL,
    Operation.FORGET,
    Operation.RESTORE,
    Operation.RESET,
)


def _identity_verdict(host: str) -> ColumnElement[bool]:
    """A run of this host that met the site's repository (it succeeded there) or found it
    lost."""
    met = Run.status.in_((Status.SUCCESS, Status.PARTIAL)) & Run.operation.in_(_JUDGED)
    return (Run.host == host) & (met | Run.error_class.in_(site_losses()))


def lost_sites(engine: Engine, host: str) -> dict[str, Run]:
    """Sites whose newest run that reached a verdict on their repository found it lost (gone,
    or another in its place). A run that succeeded there since (the repository came back, or
    an operator reset the site) clears it; runs that could not reach the site say nothing."""
    newest = _newest(engine, _identity_verdict(host), Run.site)
    return {run.site: run for run in newest if run.error_class in site_losses()}


def site_is_lost(engine: Engine, host: str, site: str) -> bool:
    """lost_sites for one site (before each run there: one site's rows, not the history's)."""
    query = (
        select(Run.error_class)
        .where(Run.site == site, _identity_verdict(host))
        .order_by(Run.id.desc())
        .limit(1)
    )
    with Session(engine) as session:
        return session.scalar(query) in site_losses()
