"""The series and totals kept as runs start and end say what the whole history says.

A long random history (several hosts, a source of the same name on each, site-wide checks,
runs that end out of order, runs a crashed daemon left behind) is written through the real
write path; every read is then compared with the same question answered by brute force over
every row, on SQLite and PostgreSQL. The migration that fills the tables from an existing
history must fill them with exactly what the write path kept.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from firebreak.clock import utcnow
from firebreak.history.database import alembic_config
from firebreak.history.latest import (
    SeriesState,
    consecutive_failures,
    durations,
    finished_runs,
    first_successes,
    latest_runs,
    latest_site_runs,
    latest_site_verdicts,
    latest_verdicts,
    lost_sites,
    run_counts,
    site_is_lost,
)
from firebreak.history.models import Cycle, Run, RunTotal, Series
from firebreak.history.records import (
    RunOutcome,
    all_runs,
    finish_run,
    interrupt_leftovers,
    prune_runs,
    start_run,
)
from firebreak.history.series import bucket, is_identity_verdict, is_verdict
from firebreak.outcomes import Operation, Status

HOSTS = ("web1", "web2")
SITES = ("a", "b", "c")
OUTCOMES = [
    RunOutcome(Status.SUCCESS),
    RunOutcome(Status.SUCCESS),
    RunOutcome(Status.SUCCESS),
    RunOutcome(Status.PARTIAL),
    RunOutcome(Status.FAILED, error_class="SiteUnreachable"),
    RunOutcome(Status.FAILED, error_class="CheckFailed"),
    RunOutcome(Status.FAILED, error_class="DrillFailed"),
    RunOutcome(Status.FAILED, error_class="RepositoryLost"),
    RunOutcome(Status.INTERRUPTED, error_class="Interrupted"),
]


def _random_history(engine: Engine, seed: int, runs: int) -> None:
    rng = random.Random(seed)
    open_runs: list[int] = []
    for _ in range(runs):
        operation = rng.choice((Operation.BACKUP,) * 4 + (Operation.CHECK, Operation.DRILL))
        source = None if operation == Operation.CHECK and rng.random() < 0.7 else "www"
        if operation == Operation.BACKUP and rng.random() < 0.3:
            source = "db"
        run_id = start_run(
            engine,
            source=source,
            site=rng.choice(SITES),
            operation=operation,
            host=rng.choice(HOSTS),
            restic_version="0.14.0",
            pid=2**22 + 1,  # no such process: a leftover is interrupted
        )
        open_runs.append(run_id)
        # Runs end out of order: a newer one may end before an older one.
        while open_runs and rng.random() < 0.6:
            finish_run(engine, open_runs.pop(rng.randrange(len(open_runs))), rng.choice(OUTCOMES))
    for host in HOSTS:
        interrupt_leftovers(engine, host, lambda _pid: False)


def _newest(runs: list[Run], keep: object) -> dict[tuple[str | None, str], Run]:
    newest: dict[tuple[str | None, str], Run] = {}
    for run in runs:
        if keep(run):  # type: ignore[operator]
            newest[(run.source, run.site)] = run  # oldest first: the last one wins
    return newest


def _ids(found: dict[object, Run | None]) -> dict[object, int | None]:
    return {key: None if run is None else run.id for key, run in found.items()}


def test_every_read_of_the_series_agrees_with_the_whole_history(engine: Engine) -> None:
    _random_history(engine, seed=14, runs=400)
    every = all_runs(engine)
    assert all(run.status != Status.RUNNING for run in every)
    for host in HOSTS:
        mine = [run for run in every if run.host == host]
        backups = [run for run in mine if run.operation == Operation.BACKUP]
        attempts = _newest(backups, lambda run: True)
        successes = _newest(backups, lambda run: run.status == Status.SUCCESS)
        latest = latest_runs(engine, host=host)
        assert set(latest) == set(attempts)
        assert {k: v.last_attempt.id for k, v in latest.items()} == _ids(attempts)  # type: ignore[union-attr]
        found = {k: v.last_success.id for k, v in latest.items() if v.last_success}
        assert found == _ids(successes)  # type: ignore[arg-type]

        firsts: dict[tuple[str | None, str], Run] = {}
        for run in backups:
            if run.status == Status.SUCCESS:
                firsts.setdefault((run.source, run.site), run)
        assert first_successes(engine, host=host) == {k: r.started_at for k, r in firsts.items()}

        failures: Counter[tuple[str | None, str]] = Counter()
        for run in backups:
            last = successes.get((run.source, run.site))
            if run.status == Status.FAILED and (last is None or run.id > last.id):
                failures[(run.source, run.site)] += 1
        assert consecutive_failures(engine, host=host) == dict(failures)

        drills = [run for run in mine if run.operation == Operation.DRILL]
        assert _ids(latest_verdicts(engine, Operation.DRILL, host=host)) == _ids(
            _newest(drills, is_verdict)  # type: ignore[arg-type]
        )
        checks = [run for run in mine if run.operation == Operation.CHECK]
        by_site = {
            site: max((r for r in checks if r.site == site), key=lambda r: r.id) for site in SITES
        }
        assert {
            s: e.last_attempt.id for s, e in latest_site_runs(engine, "check", host=host).items()
        } == {  # type: ignore[union-attr]
            site: run.id for site, run in by_site.items()
        }
        verdicts = {
            site: max((r.id for r in checks if r.site == site and is_verdict(r)), default=None)
            for site in SITES
        }
        assert _ids(latest_site_verdicts(engine, "check", host=host)) == {  # type: ignore[arg-type]
            site: run_id for site, run_id in verdicts.items() if run_id is not None
        }

        identity = {
            site: max(
                (r for r in mine if r.site == site and is_identity_verdict(r)), key=lambda r: r.id
            )
            for site in SITES
        }
        lost = {site for site, run in identity.items() if run.error_class == "RepositoryLost"}
        assert set(lost_sites(engine, host)) == lost
        assert {site for site in SITES if site_is_lost(engine, host, site)} == lost

        counts = Counter((r.source, r.site, r.operation, r.status) for r in mine)
        assert {
            (c.source, c.site, c.operation, c.status): c.count
            for c in run_counts(engine, host=host)
        } == dict(counts)
        assert finished_runs(engine, "a", Operation.CHECK, host=host) == sum(
            1 for r in checks if r.site == "a"
        )
        histogram = {d.operation: d for d in durations(engine, host=host)}
        for operation in (Operation.BACKUP, Operation.CHECK, Operation.DRILL):
            ran = [r for r in mine if r.operation == operation]
            assert histogram[operation].buckets[-1] == ("+Inf", len(ran))
            quick = sum(1 for r in ran if bucket(r.duration_seconds or 0) == "1")
            assert histogram[operation].buckets[0] == ("1", quick)


def _tables(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with Session(engine) as session:
        series = [
            tuple(getattr(s, column.key) for column in Series.__table__.columns)
            for s in session.scalars(select(Series))
        ]
        totals = [
            (t.host, t.operation, t.source, t.site, t.status, t.le, t.runs, round(t.seconds, 3))
            for t in session.scalars(select(RunTotal))
        ]
    return sorted(series), sorted(totals)  # type: ignore[type-var]


def test_the_migration_fills_the_tables_as_the_runs_would_have(engine: Engine) -> None:
    _random_history(engine, seed=3, runs=150)
    kept = _tables(engine)
    assert kept[0] and kept[1]
    command.downgrade(alembic_config(engine), "0002")
    command.upgrade(alembic_config(engine), "head")
    assert _tables(engine) == kept


def _everything_read(engine: Engine, host: str) -> object:
    """Every answer a scrape, status and catch-up get from the series and totals (runs by
    their ids)."""
    latest = latest_runs(engine, host=host)
    return _by_id(
        {
            "latest": {k: (e.last_attempt, e.last_success) for k, e in latest.items()},
            "checks": {
                site: (e.last_attempt, e.last_success)
                for site, e in latest_site_runs(engine, "check", host=host).items()
            },
            "verdicts": latest_site_verdicts(engine, "check", host=host),
            "drills": latest_verdicts(engine, Operation.DRILL, host=host),
            "first": first_successes(engine, host=host),
            "failures": consecutive_failures(engine, host=host),
            "lost": lost_sites(engine, host),
            "counts": sorted(run_counts(engine, host=host), key=repr),
            # Sums of floats, added in another order after a copy: equal to the microsecond.
            "durations": [
                (d.operation, d.buckets, round(d.seconds, 6)) for d in durations(engine, host=host)
            ],
        }
    )


def _by_id(answer: object) -> object:
    if isinstance(answer, Run):
        return ("run", answer.id)
    if isinstance(answer, dict):
        return {key: _by_id(value) for key, value in answer.items()}
    if isinstance(answer, list | tuple):
        return [_by_id(value) for value in answer]
    return answer


def test_pruning_the_whole_history_changes_no_answer(engine: Engine) -> None:
    _random_history(engine, seed=7, runs=300)
    before = {host: _everything_read(engine, host) for host in HOSTS}
    everything = utcnow() + timedelta(days=1)
    # Batches of 7 (the daemon's are bigger), until nothing is left to prune.
    while prune_runs(engine, host="web1", before=everything, batch=7):
        pass
    kept = {run.id for run in all_runs(engine) if run.host == "web1"}
    with Session(engine) as session:
        pointed = {
            run_id
            for row in session.scalars(select(Series).where(Series.host == "web1"))
            for run_id in (
                row.last_run_id,
                row.last_success_id,
                row.first_success_id,
                row.last_verdict_id,
                row.last_identity_id,
            )
            if run_id is not None
        }
        cycles = session.scalar(select(func.count()).select_from(Cycle).where(Cycle.host == "web1"))
    # Only what a series points at is left, and every answer is what it was.
    assert kept == pointed
    assert cycles == 0
    assert {host: _everything_read(engine, host) for host in HOSTS} == before
    # web2's runs were not web1's to prune.
    assert len([run for run in all_runs(engine) if run.host == "web2"]) > len(kept)


def test_pruning_keeps_what_is_younger_than_the_cut(engine: Engine) -> None:
    _random_history(engine, seed=8, runs=60)
    runs = all_runs(engine)
    middle = runs[len(runs) // 2].started_at
    while prune_runs(engine, host="web1", before=middle):
        pass
    after = {run.id for run in all_runs(engine)}
    assert all(run.id in after for run in runs if run.started_at >= middle or run.host == "web2")
    assert any(run.id not in after for run in runs if run.started_at < middle)


def test_a_run_ending_between_a_reads_queries_hides_no_run_the_series_named(
    engine: Engine,
) -> None:
    """A check that passes while a scrape reads: the series rows read before it still name
    the check before, and that run is what the scrape gets, not nothing."""

    def check() -> int:
        return start_run(
            engine,
            source=None,
            site="a",
            operation=Operation.CHECK,
            host="web1",
            restic_version="0.14.0",
        )

    for _ in range(2):
        finish_run(engine, check(), RunOutcome(Status.SUCCESS))
    running = check()
    ended: list[int] = []

    def end_it_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM runs" in statement and not ended:
            ended.append(running)
            finish_run(engine, running, RunOutcome(Status.SUCCESS))

    event.listen(engine, "before_cursor_execute", end_it_first)
    try:
        state = SeriesState.read(engine, ["web1"])
    finally:
        event.remove(engine, "before_cursor_execute", end_it_first)
    assert ended, "the run did not end between the reads"
    newest = state.site_latest("web1", Operation.CHECK)["a"]
    assert newest.last_success is not None and newest.last_success.id == running - 1
    assert newest.last_attempt is not None and newest.last_attempt.id == running
