"""Which sources are overdue: found from the run history, not from pickled scheduler jobs."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from firebreak.config.model import Config
from firebreak.config.schedules import parse_schedule
from firebreak.daemon.schedules import last_due
from firebreak.history.latest import latest_runs
from firebreak.history.records import last_cycle_starts

# A scheduled run this late is not late yet: it may be about to start.
STARTING = timedelta(minutes=1)


def slack(config: Config) -> timedelta:
    """How long after its time a scheduled run may still be on its way (jitter included)."""
    return (config.daemon.jitter or timedelta(0)) + STARTING


def last_runs(config: Config, engine: Engine, host: str | None = None) -> dict[str, datetime]:
    """When each source of a host (this one's by default) last ran: its newest finished
    cycle or its freshest success, whichever started later (a manual backup counts)."""
    host = host or config.host_name
    started = last_cycle_starts(engine, config.sources, host=host)
    for (source, _site), entry in latest_runs(engine, host=host).items():
        if entry.last_success is not None:
            began = entry.last_success.started_at
            if source not in started or began > started[source]:
                started[source] = began
    return {name: when for name, when in started.items() if name in config.sources}


def is_overdue(config: Config, source: str, last_run: datetime | None, now: datetime) -> bool:
    """Nothing ran since the source's schedule last wanted a run (or it never ran)."""
    zone = ZoneInfo(config.timezone)
    due = last_due(parse_schedule(config.sources[source].schedule), zone, now, slack(config))
    return last_run is None or last_run < due


def overdue_sources(
    config: Config, engine: Engine, now: datetime, host: str | None = None
) -> list[str]:
    """Sources whose last scheduled time passed without a run: a daemon that was down, or a
    machine that slept over it. (The gap between two fire times is no measure: a Monday and
    Tuesday schedule is not due on Wednesday, and a day across a clock change is 23 or 25
    hours long.)"""
    started = last_runs(config, engine, host)
    return [name for name in config.sources if is_overdue(config, name, started.get(name), now)]
