"""A run's record when the history lost its latest writes (a crash with commits not yet on
disk, a failover to a replica behind): its end writes the run again, whole, and what waits
behind it is written."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy import Engine, delete, update
from sqlalchemy.orm import Session

from firebreak.actions.recording import RunRecord
from firebreak.actions.runtime import Runtime
from firebreak.config import load_config
from firebreak.history.models import Cycle, Run
from firebreak.history.records import RunOutcome, all_runs, start_cycle
from firebreak.history.unwritten import Unwritten
from firebreak.outcomes import Operation, Status
from firebreak.restic.program import ResticVersion

SITE = {
    "repository": "/r",
    "password_command": "cat /x",
    "location": {"provider": "p", "region": "r", "datacenter": "d", "country": "FR"},
}


def _runtime(engine: Engine, tmp_path: Path) -> Runtime:
    path = tmp_path / "firebreak.yaml"
    data = {
        "host": "h",
        "sites": {"a": SITE},
        "sources": {"www": {"paths": ["/w"], "sites": ["a"]}},
    }
    path.write_text(yaml.safe_dump(data))
    rt = Runtime(
        config=load_config(path), engine=engine, restic_version=ResticVersion(0, 18, 0), host="h"
    )
    rt.unwritten = Unwritten(keep_starts=True)
    return rt


def _lost(engine: Engine, row: type[Run] | type[Cycle], row_id: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(delete(row).where(row.id == row_id))


def test_a_run_whose_start_the_history_lost_is_written_again_whole(
    engine: Engine, tmp_path: Path
) -> None:
    rt = _runtime(engine, tmp_path)
    cycle = start_cycle(engine, source="www", trigger="schedule", host="h", sites=1)
    record = RunRecord.start(rt, Operation.BACKUP, "www", "a", cycle)
    _lost(engine, Run, record.run_id)
    ended = record.end(RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id="5eed"))
    [again] = all_runs(engine)
    assert (again.id, again.status, again.snapshot_id) == (ended.id, Status.SUCCESS, "5eed")
    assert (again.cycle_id, again.started_at) == (cycle, record.started_at)


def test_a_run_whose_cycle_the_history_lost_is_written_without_it(
    engine: Engine, tmp_path: Path
) -> None:
    rt = _runtime(engine, tmp_path)
    cycle = start_cycle(engine, source="www", trigger="schedule", host="h", sites=1)
    _lost(engine, Cycle, cycle)
    record = RunRecord.start(rt, Operation.BACKUP, "www", "a", cycle)
    record.end(RunOutcome(Status.SUCCESS, exit_code=0))
    [run] = all_runs(engine)
    assert (run.cycle_id, run.status) == (None, Status.SUCCESS)


def test_a_run_whose_id_another_run_got_leaves_that_run_alone(
    engine: Engine, tmp_path: Path
) -> None:
    """The history lost the run and gave its id to another (SQLite reuses the highest id; a
    PostgreSQL sequence that lost its latest writes goes back too)."""
    rt = _runtime(engine, tmp_path)
    record = RunRecord.start(rt, Operation.BACKUP, "www", "a", None)
    with Session(engine) as session, session.begin():  # now a check, begun later, holds it
        session.execute(
            update(Run)
            .where(Run.id == record.run_id)
            .values(operation=Operation.CHECK, started_at=record.started_at + timedelta(1))
        )
    record.end(RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id="5eed"))
    check, backup = all_runs(engine)
    assert (check.operation, check.status, check.snapshot_id) == (
        Operation.CHECK,
        Status.RUNNING,
        None,
    )
    assert (backup.operation, backup.status, backup.snapshot_id) == (
        Operation.BACKUP,
        Status.SUCCESS,
        "5eed",
    )
