"""The latest state of every series, and the totals of its runs, kept as runs start and end.

A series is one host's operation of one source at one site (``runs.source`` empty: the whole
repository, a check). What a scrape, ``firebreak status`` and catch-up ask of the history
(the newest run, the newest success, the newest verdict, the failures since a success, how
many runs ended how, how long they took) is kept in two small tables written in the same
transaction as the run: ``series`` points at the runs, ``run_totals`` counts them. Reading
them is one seek per series whatever the history's length, and retention can delete old runs
without making a counter go backwards or losing the newest run of anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from firebreak.history.database import upsert
from firebreak.history.models import Run, RunTotal, Series
from firebreak.outcomes import Operation, Status, site_losses, verdicts

# The duration histogram's buckets (seconds).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200, float("inf"))

# The runs that look at which repository they met (actions/identity.py); an unlock or an init
# succeeds whatever repository is there and proves nothing.
JUDGED = (
    Operation.BACKUP,
    Operation.CHECK,
    Operation.DRILL,
    Operation.FORGET,
    Operation.PRUNE,
    Operation.RESTORE,
    Operation.RESET,
)

# The source of a series of runs on the whole repository (NULL cannot be part of a key).
WHOLE_REPOSITORY = ""


def bucket(seconds: float) -> str:
    """The histogram bucket a duration falls in, named by its upper bound."""
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            return bucket_name(bound)
    return "+Inf"


def bucket_name(bound: float) -> str:
    return "+Inf" if bound == float("inf") else str(bound)


def started(session: Session, run: Run) -> None:
    """A run began: it is its series' newest run (the series is created on its first run)."""
    key = _key(run)
    upsert(session, Series, key, {"last_run_id": run.id, "failures": 0}, {})
    session.execute(
        update(Series).where(*_is(Series, key)).values(last_run_id=_newer(Series.last_run_id, run))
    )


def finished(session: Session, run: Run) -> None:
    """A run ended (``run`` holds how): move its series' pointers and add it to the totals."""
    key = _key(run)
    values: dict[str, Any] = {}
    if run.status == Status.SUCCESS:
        values["last_success_id"] = _newer(Series.last_success_id, run)
        values["first_success_id"] = case(
            (Series.first_success_id.is_(None) | (Series.first_success_id > run.id), run.id),
            else_=Series.first_success_id,
        )
    if is_verdict(run):
        values["last_verdict_id"] = _newer(Series.last_verdict_id, run)
    if is_identity_verdict(run):
        values["last_identity_id"] = _newer(Series.last_identity_id, run)
    if values:
        session.execute(update(Series).where(*_is(Series, key)).values(**values))
    if run.status in (Status.SUCCESS, Status.FAILED):
        # Counted, not incremented: a run that ends after a newer one stays exact.
        since = func.coalesce(Series.last_success_id, 0)
        failed = (
            select(func.count())
            .select_from(Run)
            .where(*_runs_of(key), Run.status == Status.FAILED, Run.id > since)
            .scalar_subquery()
        )
        session.execute(update(Series).where(*_is(Series, key)).values(failures=failed))
    seconds = run.duration_seconds or 0.0
    total = {**key, "status": run.status, "le": bucket(seconds)}
    upsert(
        session,
        RunTotal,
        total,
        {"runs": 1, "seconds": seconds},
        {"runs": RunTotal.runs + 1, "seconds": RunTotal.seconds + seconds},
    )


def is_verdict(run: Run) -> bool:
    """The run passed, or found the data bad (a failure that ``judges_data``), or the site
    mutable (``judges_immutability``): runs that could not even reach the site say nothing
    either way."""
    return run.status == Status.SUCCESS or (
        run.status == Status.FAILED and run.error_class in verdicts()
    )


def is_identity_verdict(run: Run) -> bool:
    """The run met the site's repository (it succeeded there), or found it lost."""
    met = run.status in (Status.SUCCESS, Status.PARTIAL) and run.operation in JUDGED
    return met or run.error_class in site_losses()


def _key(run: Run) -> dict[str, Any]:
    return {
        "host": run.host,
        "operation": run.operation,
        "source": run.source if run.source is not None else WHOLE_REPOSITORY,
        "site": run.site,
    }


def _is(table: type[Series] | type[RunTotal], key: dict[str, Any]) -> list[ColumnElement[bool]]:
    return [getattr(table, column) == value for column, value in key.items()]


def _runs_of(key: dict[str, Any]) -> list[ColumnElement[bool]]:
    """The runs of a series (the whole repository's are recorded without a source)."""
    source = key["source"]
    return [
        Run.host == key["host"],
        Run.operation == key["operation"],
        Run.source.is_(None) if source == WHOLE_REPOSITORY else Run.source == source,
        Run.site == key["site"],
    ]


def _newer(column: InstrumentedAttribute[int | None], run: Run) -> ColumnElement[Any]:
    """The run's id if it is newer than the column's (runs may end out of order)."""
    return case((column.is_(None) | (column < run.id), run.id), else_=column)


@dataclass(frozen=True)
class Latest:
    """The newest run and the newest successful run of one source (None: any) at one site."""

    source: str | None
    site: str
    last_attempt: Run | None
    last_success: Run | None


def _series(
    session: Session, host: str, operation: Operation | None = None, site: str | None = None
) -> list[Series]:
    query = select(Series).where(Series.host == host)
    if operation is not None:
        query = query.where(Series.operation == operation)
    if site is not None:
        query = query.where(Series.site == site)
    return list(session.scalars(query))


def _runs(session: Session, ids: Iterable[int | None]) -> dict[int, Run]:
    """The runs with these ids (detached), by id: primary-key seeks."""
    wanted = sorted({run_id for run_id in ids if run_id is not None})
    runs: dict[int, Run] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        runs.update((run.id, run) for run in session.scalars(select(Run).where(Run.id.in_(chunk))))
    session.expunge_all()
    return runs


def _source(series: Series) -> str | None:
    return None if series.source == WHOLE_REPOSITORY else series.source


def latest_runs(
    engine: Engine,
    operation: Operation = Operation.BACKUP,
    sources: Iterable[str] | None = None,
    *,
    host: str,
) -> dict[tuple[str, str], Latest]:
    """Latest attempt and latest success per (source, site) of this host. (Another host's
    source of the same name is another source.)"""
    wanted = None if sources is None else set(sources)
    with Session(engine, expire_on_commit=False) as session:
        rows = [
            row
            for row in _series(session, host, operation)
            if row.source != WHOLE_REPOSITORY and (wanted is None or row.source in wanted)
        ]
        runs = _runs(session, [id for row in rows for id in (row.last_run_id, row.last_success_id)])
    return {
        (row.source, row.site): Latest(
            row.source, row.site, _get(runs, row.last_run_id), _get(runs, row.last_success_id)
        )
        for row in rows
    }


def _get(runs: dict[int, Run], run_id: int | None) -> Run | None:
    return None if run_id is None else runs.get(run_id)


# Other hosts' sites at the same repository as each of this host's sites: site → [(host, site)].
Peers = Mapping[str, Iterable[tuple[str, str]]]


def latest_site_runs(
    engine: Engine, operation: Operation, *, host: str, peers: Peers | None = None
) -> dict[str, Latest]:
    """Latest attempt and latest success of this host per site, whatever source a run was
    recorded under (for operations on the whole repository: check); with peers, whichever
    host sharing the repository ran it."""
    attempts = _newest_per_site(engine, host, operation, Series.last_run_id, peers=peers)
    successes = _newest_per_site(engine, host, operation, Series.last_success_id, peers=peers)
    return {
        site: Latest(None, site, attempts.get(site), successes.get(site))
        for site in attempts.keys() | successes.keys()
    }


def _newest_per_site(
    engine: Engine,
    host: str,
    operation: Operation | None,
    pointer: InstrumentedAttribute[int | None],
    site: str | None = None,
    *,
    peers: Peers | None = None,
) -> dict[str, Run]:
    """Per site, the newest run a pointer of this host's series there points at (and of the
    peers' series at the same repository)."""
    with Session(engine, expire_on_commit=False) as session:
        newest: dict[str, int] = {}

        def consider(site: str, rows: Iterable[Series]) -> None:
            for row in rows:
                run_id = getattr(row, pointer.key)
                if run_id is not None and run_id > newest.get(site, 0):
                    newest[site] = run_id

        for row in _series(session, host, operation, site):
            consider(row.site, [row])
        for mine, others in (peers or {}).items():
            for other_host, other_site in others:
                consider(mine, _series(session, other_host, operation, other_site))
        runs = _runs(session, newest.values())
    return {site: runs[run_id] for site, run_id in newest.items() if run_id in runs}


def first_successes(engine: Engine, *, host: str) -> dict[tuple[str, str], datetime]:
    """When this host's oldest recorded successful backup of each source at each site
    started (a site's drills are overdue some days after it, even if none ever ran)."""
    with Session(engine, expire_on_commit=False) as session:
        rows = [
            row
            for row in _series(session, host, Operation.BACKUP)
            if row.source != WHOLE_REPOSITORY
        ]
        runs = _runs(session, [row.first_success_id for row in rows])
    firsts = {(row.source, row.site): _get(runs, row.first_success_id) for row in rows}
    return {key: run.started_at for key, run in firsts.items() if run is not None}


def consecutive_failures(
    engine: Engine, operation: Operation = Operation.BACKUP, *, host: str
) -> dict[tuple[str, str], int]:
    """This host's failed runs since its last success, per (source, site)."""
    with Session(engine) as session:
        return {
            (row.source, row.site): row.failures
            for row in _series(session, host, operation)
            if row.source != WHOLE_REPOSITORY and row.failures
        }


def latest_verdicts(
    engine: Engine, operation: Operation, *, host: str
) -> dict[tuple[str, str], Run]:
    """Per (source, site), this host's newest run of this operation with a verdict on the
    data."""
    with Session(engine, expire_on_commit=False) as session:
        rows = [
            row
            for row in _series(session, host, operation)
            if row.source != WHOLE_REPOSITORY and row.last_verdict_id is not None
        ]
        runs = _runs(session, [row.last_verdict_id for row in rows])
    verdicts = {(row.source, row.site): _get(runs, row.last_verdict_id) for row in rows}
    return {key: run for key, run in verdicts.items() if run is not None}


def latest_site_verdicts(
    engine: Engine, operation: Operation, *, host: str, peers: Peers | None = None
) -> dict[str, Run]:
    """Per site, this host's newest run of this operation with a verdict on the data,
    whichever source it was recorded under (a check covers the whole repository; another
    host's site of the same name may be another repository); with peers, whichever host
    sharing the repository ran it."""
    return _newest_per_site(engine, host, operation, Series.last_verdict_id, peers=peers)


def lost_sites(engine: Engine, host: str) -> dict[str, Run]:
    """Sites whose newest run that reached a verdict on their repository found it lost (gone,
    or another in its place). A run that succeeded there since (the repository came back, or
    an operator reset the site) clears it; runs that could not reach the site say nothing."""
    newest = _newest_per_site(engine, host, None, Series.last_identity_id)
    return {site: run for site, run in newest.items() if run.error_class in site_losses()}


def site_is_lost(engine: Engine, host: str, site: str) -> bool:
    """lost_sites for one site (before each run there)."""
    return bool(_lost_at(engine, host, site))


def _lost_at(engine: Engine, host: str, site: str) -> dict[str, Run]:
    newest = _newest_per_site(engine, host, None, Series.last_identity_id, site)
    return {name: run for name, run in newest.items() if run.error_class in site_losses()}


def last_success(engine: Engine, source: str, *, host: str) -> Run | None:
    """This host's newest successful backup of the source, at any site."""
    with Session(engine, expire_on_commit=False) as session:
        ids = [
            row.last_success_id
            for row in _series(session, host, Operation.BACKUP)
            if row.source == source and row.last_success_id is not None
        ]
        runs = _runs(session, [max(ids)] if ids else [])
    return next(iter(runs.values()), None)


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
        select(
            RunTotal.source,
            RunTotal.site,
            RunTotal.operation,
            RunTotal.status,
            func.sum(RunTotal.runs),
        )
        .where(RunTotal.host == host)
        .group_by(RunTotal.source, RunTotal.site, RunTotal.operation, RunTotal.status)
    )
    with Session(engine) as session:
        return [
            RunCount(source or None, site, operation, status, int(count))
            for source, site, operation, status, count in session.execute(query)
        ]


@dataclass(frozen=True)
class Durations:
    """One operation's finished runs in the histogram's buckets."""

    operation: str
    # (upper bound, runs that took at most that long), every bucket, +Inf last.
    buckets: list[tuple[str, int]]
    seconds: float


def durations(engine: Engine, *, host: str) -> list[Durations]:
    """This host's finished runs per operation, in the duration histogram's buckets."""
    query = (
        select(RunTotal.operation, RunTotal.le, func.sum(RunTotal.runs), func.sum(RunTotal.seconds))
        .where(RunTotal.host == host)
        .group_by(RunTotal.operation, RunTotal.le)
    )
    per: dict[str, dict[str, tuple[int, float]]] = {}
    with Session(engine) as session:
        for operation, le, runs, seconds in session.execute(query):
            per.setdefault(operation, {})[le] = (int(runs), float(seconds))
    histograms = []
    for operation, by_le in sorted(per.items()):
        counted, cumulative = 0, []
        for bound in DURATION_BUCKETS:
            counted += by_le.get(bucket_name(bound), (0, 0.0))[0]
            cumulative.append((bucket_name(bound), counted))
        total = sum(seconds for _runs, seconds in by_le.values())
        histograms.append(Durations(operation, cumulative, total))
    return histograms


def finished_runs(engine: Engine, site: str, operation: Operation, *, host: str) -> int:
    """How many of this host's runs of this operation at this site have ended, whatever
    their outcome (counted by the totals: retention does not change it)."""
    query = select(func.coalesce(func.sum(RunTotal.runs), 0)).where(
        RunTotal.host == host, RunTotal.site == site, RunTotal.operation == operation
    )
    with Session(engine) as session:
        return int(session.scalar(query) or 0)


def pointed_at(host: str) -> Any:
    """Every run a series of this host points at (retention keeps them): a subquery of ids."""
    pointers = (
        Series.last_run_id,
        Series.last_success_id,
        Series.first_success_id,
        Series.last_verdict_id,
        Series.last_identity_id,
    )
    selects = [
        select(pointer.label("id")).where(Series.host == host, pointer.is_not(None))
        for pointer in pointers
    ]
    return selects[0].union(*selects[1:]).subquery()


def newest_since(
    engine: Engine,
    operation: Operation,
    at: Iterable[tuple[str, str]],
    since: datetime,
    *,
    verdict: bool = False,
) -> Run | None:
    """The newest successful run of the operation (verdict: that reached a verdict on the
    data, passed or not) at any of these (host, site) series, if it started since then:
    a prune or check one of the hosts sharing a repository did already."""
    pointer = Series.last_verdict_id if verdict else Series.last_success_id
    with Session(engine, expire_on_commit=False) as session:
        ids = [
            getattr(row, pointer.key)
            for host, site in at
            for row in _series(session, host, operation, site)
        ]
        runs = _runs(session, ids)
    recent = [run for run in runs.values() if run.started_at >= since]
    return max(recent, key=lambda run: run.id, default=None)
