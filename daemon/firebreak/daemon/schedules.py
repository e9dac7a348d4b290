"""When a schedule fires: pure calendar arithmetic on the config's parsed schedules, shared by
the daemon's triggers, catch-up and ``firebreak status`` so that all three agree.

Cron lines fire on the wall clock of the config's time zone, as crontab(5) says cron does
across daylight-saving changes: a job at fixed times whose time the clock skips runs right
after the change, and runs once when the clock shows its time twice; a job with ``*`` in its
minute or hour runs by the clock as it is (none in the skipped hour, again in the repeated one).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

from firebreak.config.schedules import Cron, Every, Schedule

# Every matching day of any cron line comes round within 28 years (Feb 29 on a given weekday).
SEARCH_DAYS = 29 * 366


def next_fire(cron: Cron, after: datetime, zone: tzinfo) -> datetime:
    """The first time at or after ``after`` (aware) at which the cron line fires, in zone.
    (Step from one to the next in UTC: on the zone's clock, adding to a time the clock
    shows twice forgets which of the two it was.)"""
    day = after.astimezone(zone).date()
    for _ in range(SEARCH_DAYS):
        if _day_matches(cron, day):
            later = [moment for moment in _moments(cron, day, zone) if moment >= after]
            if later:
                return min(later).astimezone(zone)
        day += timedelta(days=1)
    raise ValueError(f"{cron.text!r} does not fire within {SEARCH_DAYS // 366} years")


def period(schedule: Schedule, zone: tzinfo, now: datetime) -> timedelta:
    """The time between two runs around now (for cron: the next two fire times)."""
    if isinstance(schedule, Every):
        return schedule.interval
    first = next_fire(schedule, now, zone).astimezone(UTC)
    return next_fire(schedule, first + timedelta(microseconds=1), zone) - first


def next_run(
    schedule: Schedule, zone: tzinfo, now: datetime, last_start: datetime | None
) -> datetime | None:
    """When the schedule runs next, as the daemon would: a cron line at its next fire time; an
    interval one interval after the last run started (None: never ran, so at the daemon's
    start). A time before now means overdue: the daemon's catch-up runs it."""
    if isinstance(schedule, Cron):
        return next_fire(schedule, now, zone)
    return None if last_start is None else last_start + schedule.interval


def _day_matches(cron: Cron, day: date) -> bool:
    if day.month not in cron.months:
        return False
    in_days = day.day in cron.days
    in_weekdays = day.isoweekday() % 7 in cron.weekdays
    if cron.any_day or cron.any_weekday:
        return in_days and in_weekdays
    return in_days or in_weekdays  # both restricted: either one (crontab(5))


def _moments(cron: Cron, day: date, zone: tzinfo) -> list[datetime]:
    """The instants (UTC) the line fires at on that day of the wall clock."""
    found = []
    for hour in cron.hours:
        for minute in cron.minutes:
            wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            first = wall.astimezone(UTC)
            if first.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
                # The clock skips this time: a fixed-time job runs right after the change.
                if not cron.on_the_clock:
                    found.append(_end_of_gap(wall, zone))
                continue
            found.append(first)
            second = wall.replace(fold=1).astimezone(UTC)
            if second != first and cron.on_the_clock:
                found.append(second)  # the clock shows this time twice
    return found


def _end_of_gap(wall: datetime, zone: tzinfo) -> datetime:
    """The first whole minute the clock shows after skipping ``wall``."""
    candidate = wall
    for _ in range(24 * 60):
        candidate += timedelta(minutes=1)
        instant = candidate.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return instant
    raise ValueError(f"no time after the clock change at {wall:%Y-%m-%d %H:%M}")
