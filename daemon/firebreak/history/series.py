"""The latest state of every series, and the totals of its runs, kept as runs start and end.

A series is one host's operation of one source at one site (``runs.source`` empty: the whole
repository, a check). What a scrape, ``firebreak status`` and catch-up ask of the history
(the newest run, the newest success, the newest verdict, the failures since a success, how
many runs ended how, how long they took) is kept in two small tables written in the same
transaction as the run: ``series`` points at the runs, ``run_totals`` counts them. Reading
them is one seek per series whatever the history's length, and retention can delete old runs
without making a counter go backwards or losing the newest run of anything. This module
writes them; history/latest.py reads them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, func, select, update
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
