"""Writes kept while the history is away: a cycle and its runs that start then get stand-in
ids, and are written, in order and under their real ids, when it answers again."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, InternalError, OperationalError

from firebreak.clock import utcnow
from firebreak.history.records import (
    RunOutcome,
    all_runs,
    finish_cycle,
    finish_run,
    run_started,
    start_cycle,
    start_run,
)
from firebreak.history.unwritten import NotWrittenYet, Unwritten
from firebreak.outcomes import Operation, Status

T = TypeVar("T")


class History:
    """The database, answering or not; or committing and then losing the answer."""

    def __init__(self) -> None:
        self.away = False
        self.answer_lost = False

    def __call__(self, write: Callable[[Engine], T]) -> Callable[[Engine], T]:
        def guarded(engine: Engine) -> T:
            if self.away:
                raise OperationalError("INSERT", {}, Exception("connection refused"))
            done = write(engine)
            if self.answer_lost:
                raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
            return done

        return guarded


def test_a_cycle_started_while_the_history_is_away_is_written_under_real_ids(
    engine: Engine,
) -> None:
    history, kept = History(), Unwritten(keep_starts=True)
    earlier = kept.insert(engine, history(_cycle), "an earlier cycle", found=_no_row)
    assert earlier > 0 and len(kept) == 0  # written at once

    history.away = True
    cycle = kept.insert(engine, history(_cycle), "cycle of www started", found=_no_row)
    run = kept.insert(
        engine,
        history(lambda e: _run(e, cycle_id=kept.real(cycle))),
        "backup started",
        found=_no_row,
    )
    assert cycle < 0 and run < 0 and run != cycle
    done = RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id="abcd1234")
    assert (
        kept.write(engine, history(lambda e: finish_run(e, kept.real(run), done)), "ended") is None
    )
    end = history(lambda e: finish_cycle(e, kept.real(cycle), status=Status.SUCCESS, succeeded=1))
    assert kept.write(engine, end, "cycle ended") is None
    assert len(kept) == 4 and all_runs(engine) == []
    with pytest.raises(NotWrittenYet):
        kept.real(run)
    assert not kept.flush(engine)  # still away: everything stays, in order

    history.away = False
    assert kept.flush(engine) and len(kept) == 0
    [written] = all_runs(engine)
    assert written.id == kept.real(run) and written.cycle_id == kept.real(cycle) > earlier
    assert (written.status, written.snapshot_id) == (Status.SUCCESS, "abcd1234")
    assert kept.real(earlier) == earlier  # a real id is its own


def test_a_write_behind_a_waiting_one_waits_too(engine: Engine) -> None:
    history, kept = History(), Unwritten(keep_starts=True)
    history.away = True
    run = kept.insert(engine, history(_run), "backup started", found=_no_row)
    history.away = False
    # The history answers, but the run's start waits: its end is written after it, not before.
    done = RunOutcome(Status.SUCCESS, exit_code=0)
    row = kept.write(engine, history(lambda e: finish_run(e, kept.real(run), done)), "ended")
    assert row is not None and row.id == kept.real(run) and row.status == Status.SUCCESS


def test_a_start_committed_though_its_answer_was_lost_is_not_written_twice(
    engine: Engine,
) -> None:
    history, kept = History(), Unwritten(keep_starts=True)
    history.answer_lost = True
    at = utcnow()
    start = history(lambda e: _run(e, started_at=at))
    found = functools.partial(run_started, host="h", site="a", operation=Operation.BACKUP, at=at)
    run = kept.insert(engine, start, "backup started", found=found)
    assert run < 0 and len(all_runs(engine)) == 1  # committed, though it seemed not to be
    history.answer_lost = False
    assert kept.flush(engine)
    [written] = all_runs(engine)
    assert written.id == kept.real(run)


def test_a_kept_write_that_can_never_be_written_holds_back_nothing(engine: Engine) -> None:
    history, kept = History(), Unwritten(keep_starts=True)
    history.away = True
    kept.write(engine, history(_broken), "a write with a bug in it")
    kept.write(engine, history(_refused), "a write the database refuses")
    run = kept.insert(engine, history(_run), "backup started", found=_no_row)
    history.away = False
    assert kept.flush(engine) and len(kept) == 0
    assert [r.id for r in all_runs(engine)] == [kept.real(run)]


def _broken(engine: Engine) -> None:
    raise ValueError("not a database's refusal")


def _refused(engine: Engine) -> None:
    raise IntegrityError("INSERT", {}, Exception("violates foreign key constraint"))


def _no_row(engine: Engine) -> int | None:
    return None


def _cycle(engine: Engine) -> int:
    return start_cycle(engine, source="www", trigger="schedule", host="h", sites=1)


def _run(engine: Engine, cycle_id: int | None = None, started_at: datetime | None = None) -> int:
    return start_run(
        engine,
        source="www",
        site="a",
        operation=Operation.BACKUP,
        host="h",
        restic_version="0.14.0",
        cycle_id=cycle_id,
        started_at=started_at,
    )


def test_a_command_run_by_hand_keeps_no_start(engine: Engine) -> None:
    """It would exit with what it kept: it says the history is away instead."""
    history, kept = History(), Unwritten()
    history.away = True
    with pytest.raises(OperationalError):
        kept.insert(engine, history(_cycle), "cycle of www started", found=_no_row)
    assert len(kept) == 0


def test_a_read_only_history_is_away_not_a_refusal(engine: Engine) -> None:
    """A standby after a failover, or a transaction made read-only: what waits, waits."""
    kept = Unwritten(keep_starts=True)
    run = kept.insert(engine, _read_only, "backup started", found=_no_row)
    assert run < 0
    assert not kept.flush(engine) and len(kept) == 1


def _read_only(engine: Engine) -> int:
    raise InternalError("INSERT", {}, Exception("cannot execute INSERT in a read-only transaction"))
