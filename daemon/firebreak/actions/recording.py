"""How one run of this process is recorded: as ``running`` before restic starts, then as it
ended. While the history is away both are kept (history/unwritten.py) and the run goes on under
a stand-in id; the run as this process knows it stands in for the row meanwhile."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import NoResultFound

from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.history.models import Run
from firebreak.history.records import (
    RunOutcome,
    ended,
    finish_run,
    has_cycle,
    run_started,
    start_run,
)
from firebreak.history.unwritten import NotWrittenYet
from firebreak.outcomes import Operation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """A run of this process, started in the history (or kept to be)."""

    rt: Runtime
    run_id: int
    source: str | None
    site: str
    operation: Operation
    started_at: datetime
    cycle_id: int | None

    @classmethod
    def start(
        cls,
        rt: Runtime,
        operation: Operation,
        source: str | None,
        site: str,
        cycle_id: int | None,
    ) -> RunRecord:
        """Record the run as ``running``, now."""
        at, unwritten = utcnow(), rt.unwritten

        def started(engine: Engine) -> int:
            return _inserted(rt, engine, operation, source, site, at, cycle_id)

        def found(engine: Engine) -> int | None:
            return run_started(engine, host=rt.host, site=site, operation=operation, at=at)

        what = f"{operation} of {source} at {site} started at {at:%Y-%m-%d %H:%M:%S}Z"
        run_id = unwritten.insert(rt.engine, started, what, found=found)
        return cls(rt, run_id, source, site, operation, at, cycle_id)

    def end(self, outcome: RunOutcome) -> Run:
        """The run's row once its end is written; when the history does not answer, the end
        is kept to write later (rt.unwritten) and the run as this process knows it."""
        at, unwritten = utcnow(), self.rt.unwritten
        what = (
            f"run {self.run_id} ({self.operation} of {self.source} at {self.site}) ended "
            f"{outcome.status} at {at:%Y-%m-%d %H:%M:%S}Z"
            + (f", snapshot {outcome.snapshot_id}" if outcome.snapshot_id else "")
            + (f": {outcome.error_class}: {outcome.error_message}" if outcome.error_class else "")
        )

        again: list[int] = []  # the run's row written anew, once

        def finish(engine: Engine) -> Run:
            if again:
                return finish_run(engine, again[0], outcome, at=at)
            try:
                run_id = unwritten.real(self.run_id)
                return finish_run(engine, run_id, outcome, at=at, started_at=self.started_at)
            except (NoResultFound, NotWrittenYet):  # its start was lost, by the history (its
                # latest writes, in a crash or a failover) or as a write it refused
                log.warning("the history lost the start of run %s: written again", self.run_id)
                again.append(
                    _inserted(
                        self.rt,
                        engine,
                        self.operation,
                        self.source,
                        self.site,
                        self.started_at,
                        self.cycle_id,
                    )
                )
                return finish_run(engine, again[0], outcome, at=at)

        row = unwritten.write(self.rt.engine, finish, what)
        return row if row is not None else self.as_known(outcome, at)

    def as_known(self, outcome: RunOutcome, at: datetime) -> Run:
        known = Run(
            id=self.run_id,
            cycle_id=self.cycle_id,
            source=self.source,
            site=self.site,
            operation=self.operation,
            started_at=self.started_at,
        )
        return ended(known, outcome, at)


def _inserted(
    rt: Runtime,
    engine: Engine,
    operation: Operation,
    source: str | None,
    site: str,
    at: datetime,
    cycle_id: int | None,
) -> int:
    """The run's row, inserted as ``running``; in its cycle where the history has that."""
    try:
        cycle = None if cycle_id is None else rt.unwritten.real(cycle_id)
    except NotWrittenYet:  # the cycle's start was refused: the run stands alone
        cycle = None
    if cycle is not None and not has_cycle(engine, cycle):
        cycle = None  # lost with the history's latest writes (a crash, a failover)
    return start_run(
        engine,
        source=source,
        site=site,
        operation=operation,
        host=rt.host,
        restic_version=str(rt.restic_version),
        cycle_id=cycle,
        pid=os.getpid(),
        started_at=at,
    )
