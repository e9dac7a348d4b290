"""Schedules as APScheduler 3 triggers: cron lines through the daemon's own crontab(5)
calendar, ``every DURATION`` through APScheduler's interval trigger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from firebreak.config.schedules import Cron, Schedule
from firebreak.daemon.schedules import next_fire


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """Fires when the cron line does (daemon/schedules.py), plus up to ``jitter`` seconds."""

    def __init__(self, cron: Cron, zone: tzinfo, jitter: int | None = None) -> None:
        self.cron = cron
        self.zone = zone
        self.jitter = jitter

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # After a run, the next one after it (the scheduler decides about runs it missed);
        # at the start, the next one from now. Arithmetic in UTC: on the zone's clock, a
        # time the clock shows twice would lose which of the two it was (PEP 495).
        start = now
        if previous_fire_time is not None:
            start = previous_fire_time.astimezone(UTC) + timedelta(microseconds=1)
        fire: datetime | None = self._apply_jitter(
            next_fire(self.cron, start, self.zone), self.jitter, now
        )
        return fire

    def __str__(self) -> str:
        return f"cron[{self.cron.text}]"


def trigger(schedule: Schedule, zone: tzinfo, jitter: timedelta | None = None) -> BaseTrigger:
    spread = int(jitter.total_seconds()) if jitter else None
    if isinstance(schedule, Cron):
        return CrontabTrigger(schedule, zone, spread)
    return IntervalTrigger(seconds=schedule.interval.total_seconds(), timezone=zone, jitter=spread)
