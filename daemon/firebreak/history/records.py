"""Writing the run history, and reading cycles and repositories. The only modules that issue
queries are this one and history/series.py (the latest state of every series), which every
write here keeps current in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, exists, select, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from firebreak.clock import utcnow
from firebreak.history import latest, series
from firebreak.history.models import Cycle, Run, SiteRepository
from firebreak.outcomes import Failure, Interrupted, Operation, Status, leaves_stale_lock


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


def start_cycle(
    engine: Engine,
    *,
    source: str,
    trigger: str,
    host: str,
    sites: int,
    started_at: datetime | None = None,
) -> int:
    """started_at: when it began, if not now (written after the history was away)."""
    with Session(engine) as session, session.begin():
        return _inserted(
            session,
            Cycle(
                source=source,
                trigger=trigger,
                host=host,
                status=Status.RUNNING,
                started_at=started_at or utcnow(),
                sites_total=sites,
                sites_succeeded=0,
            ),
        )


def finish_cycle(
    engine: Engine,
    cycle_id: int,
    *,
    status: Status,
    succeeded: int,
    at: datetime | None = None,
) -> None:
    """at: when it ended, if not now (written after the history was away)."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(Cycle)
            .where(Cycle.id == cycle_id)
            .values(status=status, finished_at=at or utcnow(), sites_succeeded=succeeded)
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
    started_at: datetime | None = None,
) -> int:
    """Record a run as ``running`` before restic starts (started_at: when it did, if not now:
    written after the history was away)."""
    with Session(engine) as session, session.begin():
        run = Run(
            cycle_id=cycle_id,
            source=source,
            site=site,
            operation=operation,
            status=Status.RUNNING,
            started_at=started_at or utcnow(),
            host=host,
            restic_version=restic_version,
            pid=pid,
            repository_initialized=False,
        )
        run_id = _inserted(session, run)
        series.started(session, run)
        return run_id


def cycle_started(engine: Engine, *, host: str, source: str, at: datetime) -> int | None:
    """The cycle of the source this host recorded as started at that instant, if any."""
    query = select(Cycle.id).where(
        Cycle.host == host, Cycle.source == source, Cycle.started_at == at
    )
    with Session(engine) as session:
        return session.scalars(query.limit(1)).first()


def has_cycle(engine: Engine, cycle_id: int) -> bool:
    with Session(engine) as session:
        return session.get(Cycle, cycle_id) is not None


def run_started(
    engine: Engine, *, host: str, site: str, operation: Operation, at: datetime
) -> int | None:
    """This host's run of the operation at the site recorded as started at that instant."""
    query = select(Run.id).where(
        Run.host == host, Run.started_at == at, Run.site == site, Run.operation == operation
    )
    with Session(engine) as session:
        return session.scalars(query.limit(1)).first()


def _inserted(session: Session, row: Cycle | Run) -> int:
    """Add the row and return the id the database gave it."""
    session.add(row)
    session.flush()
    return row.id


def finish_run(
    engine: Engine,
    run_id: int,
    outcome: RunOutcome,
    at: datetime | None = None,
    *,
    started_at: datetime | None = None,
) -> Run:
    """Record how a run ended (at: when, if not now); returns the finished row (detached).
    started_at: when the run began, to tell it from another run that got its id after the
    history lost its latest writes (NoResultFound, as when the row is gone)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.get_one(Run, run_id)
        if started_at is not None and row.started_at != started_at:
            raise NoResultFound(f"run {run_id} is another run now")
        run = ended(row, outcome, at or utcnow())
        session.flush()
        series.finished(session, run)
        return run


def ended(run: Run, outcome: RunOutcome, at: datetime) -> Run:
    """The run with its end set from its outcome (a row, or one the history does not have
    yet: actions/operation.py keeps those)."""
    run.status = outcome.status
    run.finished_at = at
    run.duration_seconds = (at - run.started_at).total_seconds()
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


def last_cycle_starts(engine: Engine, sources: Iterable[str], *, host: str) -> dict[str, datetime]:
    """When each of these sources' newest finished cycle on this host started, failed or
    not; an interrupted one does not count (its work is still to be done). One seek per
    source."""
    finished = (Status.SUCCESS, Status.PARTIAL, Status.FAILED)
    starts = {}
    with Session(engine) as session:
        for source in sources:
            query = (
                select(Cycle.started_at)
                .where(Cycle.host == host, Cycle.source == source, Cycle.status.in_(finished))
                .order_by(Cycle.started_at.desc())
                .limit(1)
            )
            started = session.scalar(query)
            if started is not None:
                starts[source] = started
    return starts


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
        for run in leftovers:
            series.finished(session, run)
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
    run = latest.last_success(engine, source, host=host)
    return None if run is None else run.bytes_processed


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


# How far back left_a_lock looks: this host's latest runs at the site, newest first.
LOCK_LOOKBACK = 200


def left_a_lock(engine: Engine, host: str, site: str) -> bool:
    """Whether this host's last word at the site was a run that was stopped or met a lock,
    with no ``restic unlock`` since: restic's lock may still be there. Any process asks (a
    CLI check after the daemon's stalled backup); a successful unlock is the answer."""
    query = (
        select(Run.operation, Run.status, Run.error_class)
        .where(Run.host == host, Run.site == site)
        .order_by(Run.id.desc())
        .limit(LOCK_LOOKBACK)
    )
    with Session(engine) as session:
        for operation, status, error_class in session.execute(query):
            if operation == Operation.UNLOCK and status == Status.SUCCESS:
                return False
            if leaves_stale_lock(error_class):
                return True
    return False


def prune_runs(engine: Engine, *, host: str, before: datetime, batch: int = 1000) -> int:
    """Delete up to ``batch`` of this host's oldest finished runs that started before
    ``before``, never one a series points at (the newest run, success, verdict ... of every
    series stays, and the totals keep counting the deleted ones); then its cycles left with
    no run. One short transaction: returns how many runs went (0: nothing left to prune)."""
    kept = series.pointed_at(host)
    doomed = (
        select(Run.id)
        .where(
            Run.host == host,
            Run.started_at < before,
            Run.status != Status.RUNNING,
            Run.id.not_in(select(kept.c.id)),
        )
        .order_by(Run.started_at)
        .limit(batch)
    )
    with Session(engine) as session, session.begin():
        ids = list(session.scalars(doomed))
        if ids:
            session.execute(delete(Run).where(Run.id.in_(ids)))
        empty = (
            select(Cycle.id)
            .where(
                Cycle.host == host,
                Cycle.started_at < before,
                Cycle.status != Status.RUNNING,
                ~exists().where(Run.cycle_id == Cycle.id),
            )
            .limit(batch)
        )
        cycles = list(session.scalars(empty))
        if cycles:
            session.execute(delete(Cycle).where(Cycle.id.in_(cycles)))
    return len(ids) or len(cycles)
