"""When a source's cycles run: a five-field cron expression, or ``every DURATION``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from firebreak.config.durations import parse_duration

EVERY = "every "


@dataclass(frozen=True)
class Schedule:
    text: str
    interval: timedelta | None = None

    def trigger(self, zone: tzinfo, jitter: timedelta | None = None) -> BaseTrigger:
        spread = int(jitter.total_seconds()) if jitter else None
        if self.interval is not None:
            return IntervalTrigger(
                seconds=self.interval.total_seconds(), timezone=zone, jitter=spread
            )
        return CronTrigger.from_crontab(self.text, timezone=zone).__class__(
            **_cron_fields(self.text), timezone=zone, jitter=spread
        )

    def period(self, zone: tzinfo, now: datetime) -> timedelta:
        """The time between two cycles around now (for cron: the next two fire times)."""
        if self.interval is not None:
            return self.interval
        trigger = CronTrigger.from_crontab(self.text, timezone=zone)
        first = trigger.get_next_fire_time(None, now)
        assert first is not None
        second = trigger.get_next_fire_time(first, first + timedelta(microseconds=1))
        assert second is not None
        period: timedelta = second - first
        return period


def _cron_fields(text: str) -> dict[str, str]:
    minute, hour, day, month, day_of_week = text.split()
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": day_of_week}


def parse_schedule(text: str) -> Schedule:
    """Raise ValueError with the accepted forms on anything else."""
    stripped = text.strip()
    if stripped.startswith(EVERY):
        return Schedule(stripped, interval=parse_duration(stripped[len(EVERY) :]))
    if len(stripped.split()) != 5:
        raise ValueError(
            f"{text!r} is neither a five-field cron expression (minute hour day month weekday) "
            "nor 'every DURATION' (every 6h)"
        )
    try:
        CronTrigger.from_crontab(stripped, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from None
    return Schedule(stripped)
