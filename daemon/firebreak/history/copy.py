"""``firebreak db copy``: one host's history moved into another database (a host joining a
fleet's PostgreSQL), losing nothing, and idempotent.

Rows are matched by what they are, not by their ids (the target gives new ones): a cycle by
its host, source and start; a run by its host, operation, source, site and start; a recorded
repository by its host, site, location, id and time. What the target has already is left as
it is, so a copy run twice, or stopped half-way and run again, copies each row once. Then the
host's series and totals are rebuilt in the target from its runs there, plus what retention
pruned at the source (the totals keep counting pruned runs). One transaction on the target:
it holds the whole copy or none of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from firebreak.history.models import Cycle, Run, RunTotal, Series, SiteRepository
from firebreak.history.series import WHOLE_REPOSITORY, bucket, is_identity_verdict, is_verdict
from firebreak.outcomes import Status

BATCH = 2000


class CopyRefused(Exception):
    """The copy cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Copied:
    cycles: int
    runs: int
    repositories: int
    # Rows the target held already (an earlier copy).
    already: int


def copy_host(source: Engine, target: Engine, host: str) -> Copied:
    """Copy this host's cycles, runs and recorded repositories from source to target."""
    with Session(source) as reading:
        running = reading.scalar(
            select(func.count()).where(Run.host == host, Run.status == Status.RUNNING)
        )
        if running:
            raise CopyRefused(
                f"{running} run(s) of {host} are still running in the source history: stop "
                "the daemon (and any firebreak command) first, then copy"
            )
        cycles = list(reading.scalars(select(Cycle).where(Cycle.host == host).order_by(Cycle.id)))
        runs = list(reading.scalars(select(Run).where(Run.host == host).order_by(Run.id)))
        repositories = list(
            reading.scalars(
                select(SiteRepository)
                .where(SiteRepository.host == host)
                .order_by(SiteRepository.id)
            )
        )
        pruned = _pruned(reading, host, runs)
        reading.expunge_all()
    with Session(target) as writing, writing.begin():
        cycle_ids, new_cycles, old_cycles = _copy(
            writing,
            Cycle,
            cycles,
            key=lambda row: (row.source, row.started_at),
            existing=select(Cycle).where(Cycle.host == host),
            adjust=lambda values: values,
        )
        run_ids, new_runs, old_runs = _copy(
            writing,
            Run,
            runs,
            key=lambda row: (row.operation, row.source, row.site, row.started_at),
            existing=select(Run).where(Run.host == host),
            adjust=lambda values: {**values, "cycle_id": cycle_ids.get(values["cycle_id"])},
        )
        _, new_repositories, old_repositories = _copy(
            writing,
            SiteRepository,
            repositories,
            key=lambda row: (row.site, row.repository, row.repository_id, row.recorded_at),
            existing=select(SiteRepository).where(SiteRepository.host == host),
            adjust=lambda values: {**values, "run_id": run_ids.get(values["run_id"])},
        )
        rebuild(writing, host, pruned)
    return Copied(new_cycles, new_runs, new_repositories, old_cycles + old_runs + old_repositories)


def _copy(
    session: Session,
    table: Any,
    rows: list[Any],
    *,
    key: Any,
    existing: Any,
    adjust: Any,
) -> tuple[dict[int, int], int, int]:
    """Insert the rows the target lacks; returns (source id → target id, inserted, found)."""
    found = {key(row): row.id for row in session.scalars(existing)}
    ids: dict[int, int] = {}
    inserted = already = 0
    columns = [column.key for column in table.__table__.columns if column.key != "id"]
    for start in range(0, len(rows), BATCH):
        for row in rows[start : start + BATCH]:
            there = found.get(key(row))
            if there is not None:
                ids[row.id] = there
                already += 1
                continue
            copy = table(**adjust({column: getattr(row, column) for column in columns}))
            session.add(copy)
            session.flush()
            ids[row.id] = copy.id
            inserted += 1
    return ids, inserted, already


# (operation, source, site, status, le) → runs and seconds retention removed at the source.
Remainder = dict[tuple[str, str, str, str, str], tuple[int, float]]


def _pruned(session: Session, host: str, runs: list[Run]) -> Remainder:
    """What the source's totals count beyond its runs: the runs retention pruned there."""
    counted: Counter[tuple[str, str, str, str, str]] = Counter()
    seconds: dict[tuple[str, str, str, str, str], float] = {}
    for run in runs:
        key = _total_key(run)
        counted[key] += 1
        seconds[key] = seconds.get(key, 0.0) + (run.duration_seconds or 0.0)
    remainder: Remainder = {}
    for total in session.scalars(select(RunTotal).where(RunTotal.host == host)):
        key = (total.operation, total.source, total.site, total.status, total.le)
        left = total.runs - counted[key]
        if left > 0:
            remainder[key] = (left, max(total.seconds - seconds.get(key, 0.0), 0.0))
    return remainder


def _total_key(run: Run) -> tuple[str, str, str, str, str]:
    """The run's series (operation, source, site), its status and its duration's bucket."""
    source = run.source if run.source is not None else WHOLE_REPOSITORY
    return (run.operation, source, run.site, run.status, bucket(run.duration_seconds or 0.0))


def rebuild(session: Session, host: str, pruned: Remainder | None = None) -> None:
    """The host's series and totals, made again from its runs (and what was pruned): one
    pass, oldest first, judged by the write path's own predicates (history/series.py)."""
    session.execute(delete(Series).where(Series.host == host))
    session.execute(delete(RunTotal).where(RunTotal.host == host))
    series: dict[tuple[str, str, str], Series] = {}
    totals: dict[tuple[str, str, str, str, str], tuple[int, float]] = dict(pruned or {})
    for run in session.scalars(select(Run).where(Run.host == host).order_by(Run.id)):
        operation, name, site = key = _total_key(run)[:3]
        row = series.get(key)
        if row is None:
            row = series[key] = Series(
                host=host, operation=operation, source=name, site=site, failures=0
            )
        row.last_run_id = run.id
        if run.status == Status.SUCCESS:
            row.last_success_id = run.id
            row.first_success_id = row.first_success_id or run.id
            row.failures = 0
        elif run.status == Status.FAILED:
            row.failures += 1
        if is_verdict(run):
            row.last_verdict_id = run.id
        if is_identity_verdict(run):
            row.last_identity_id = run.id
        if run.status != Status.RUNNING:
            counted = _total_key(run)
            count, seconds = totals.get(counted, (0, 0.0))
            totals[counted] = (count + 1, seconds + (run.duration_seconds or 0.0))
    session.add_all(series.values())
    for (operation, name, site, status, le), (count, total) in totals.items():
        session.add(
            RunTotal(
                host=host,
                operation=operation,
                source=name,
                site=site,
                status=status,
                le=le,
                runs=count,
                seconds=total,
            )
        )
    session.flush()
