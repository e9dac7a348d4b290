"""Which sources are overdue: found from the run history, not from pickled scheduler jobs."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from firebreak.config.model import Config
from firebreak.config.schedules import parse_schedule
from firebreak.daemon.schedules import period
from firebreak.history.records import last_cycle_starts, latest_runs


def overdue_sources(config: Config, engine: Engine, now: datetime) -> list[str]:
    """Sources whose freshest successful site, and whose last cycle, are both older than
    their schedule's period (or that never ran): a daemon that was down or a machine that
    slept over their scheduled time."""
    zone = ZoneInfo(config.timezone)
    latest = latest_runs(engine)
    cycles = last_cycle_starts(engine)
    due = []
    for name, source in config.sources.items():
        between = period(parse_schedule(source.schedule), zone, now)
        successes = [
            entry.last_success.started_at
            for (source_name, _site), entry in latest.items()
            if source_name == name and entry.last_success is not None
        ]
        freshest = max(successes, default=None)
        last_cycle = cycles.get(name)
        stale = freshest is None or now - freshest > between
        idle = last_cycle is None or now - last_cycle > between
        if stale and idle:
            due.append(name)
    return due
