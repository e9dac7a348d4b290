"""When a schedule fires: pure calendar arithmetic on the config's parsed schedules, shared by
the daemon's triggers, catch-up and ``firebreak status`` so that all three agree.

Cron lines fire on the wall clock of the config's time zone, as crontab(5) says cron does
across daylight-saving changes: a job at fixed times whose time the clock skips runs right
after the change, and runs once when the clock shows its time twice; a job with ``*`` in its
minute or hour runs by the clock as it is (none in the skipped hour, again in the repeated one).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo

from firebreak.config.schedules import Cron, Every, Schedule

# Every matching day of any cron line comes round within 28 years (Feb 29 on a given weekday).
SEARCH_DAYS = 29 * 366


def next_fire(cron: Cron, after: datetime, zone: tzinfo) -> datetime:
    """The first time at or after ``after`` (aware) at which the cron line fires, in zone.
    (Step from one to the next in UTC: on the zone's clock, adding to a time the clock
    shows twice forgets which of the two it was.)"""
    local = after.astimezone(zone)
    day = local.date()
    # The first day from a clock change before after's hour: earlier ones cannot be later.
    hours = range(max(local.hour - 3, 0), 24)
    for _ in range(SEARCH_DAYS):
        if _day_matches(cron, day):
            best: tuple[datetime, datetime] | None = None
            for wall, instant in _moments(cron, day, zone, hours):
                if best is not None and wall - best[0] > _CLOCK_CHANGE:
                    break  # nothing further on the clock can come sooner
                if instant >= after and (best is None or instant < best[1]):
                    best = (wall, instant)
            if best is not None:
                return best[1].astimezone(zone)
        day += timedelta(days=1)
        hours = range(24)
    raise ValueError(f"{cron.text!r} does not fire within {SEARCH_DAYS // 366} years")


def previous_fire(cron: Cron, before: datetime, zone: tzinfo) -> datetime:
    """The last time at or before ``before`` (aware) at which the cron line fired, in zone."""
    local = before.astimezone(zone)
    day = local.date()
    hours = range(0, min(local.hour + 4, 24))
    for _ in range(SEARCH_DAYS):
        if _day_matches(cron, day):
            best: tuple[datetime, datetime] | None = None
            for wall, instant in _moments(cron, day, zone, hours, backwards=True):
                if best is not None and best[0] - wall > _CLOCK_CHANGE:
                    break  # nothing further back on the clock can come later
                if instant <= before and (best is None or instant > best[1]):
                    best = (wall, instant)
            if best is not None:
                return best[1].astimezone(zone)
        day -= timedelta(days=1)
        hours = range(24)
    raise ValueError(f"{cron.text!r} did not fire within {SEARCH_DAYS // 366} years")


def last_due(schedule: Schedule, zone: tzinfo, now: datetime, slack: timedelta) -> datetime:
    """When the schedule last wanted a run, as of now: a run that started since is done. A
    time is due only once ``slack`` has passed after it (the daemon's jitter and a minute:
    a scheduled run that is about to start is not late)."""
    if isinstance(schedule, Every):
        return now - schedule.interval - slack
    return previous_fire(schedule, now - slack, zone)


def period(schedule: Schedule, now: datetime, zone: tzinfo) -> timedelta:
    """How far apart the schedule's runs are around now, in elapsed time: its interval, or for
    a cron line the longer of the gap it is in and the one before (a monthly line's gaps
    differ from month to month: what has passed since the last run can be the longer)."""
    if isinstance(schedule, Every):
        return schedule.interval
    last = previous_fire(schedule, now, zone).astimezone(UTC)
    before = previous_fire(schedule, last - timedelta(seconds=1), zone).astimezone(UTC)
    upcoming = next_fire(schedule, now, zone).astimezone(UTC)
    return max(upcoming - last, last - before)


def _day_matches(cron: Cron, day: date) -> bool:
    if day.month not in cron.months:
        return False
    in_days = day.day in cron.days
    in_weekdays = day.isoweekday() % 7 in cron.weekdays
    if cron.any_day or cron.any_weekday:
        return in_days and in_weekdays
    return in_days or in_weekdays  # both restricted: either one (crontab(5))


def _moments(
    cron: Cron, day: date, zone: tzinfo, hours: range = range(24), *, backwards: bool = False
) -> Iterator[tuple[datetime, datetime]]:
    """(wall time, instant) of each time the line fires on that day of the zone's clock, in
    wall-clock order (or its reverse; instants differ from that order only around a clock
    change); only within ``hours`` of the clock."""
    for hour in sorted(set(hours) & cron.hours, reverse=backwards):
        for minute in sorted(cron.minutes, reverse=backwards):
            wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            first = wall.astimezone(UTC)
            if first.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
                # The clock skips this time: a fixed-time job runs right after the change.
                if not cron.on_the_clock:
                    yield wall, _end_of_gap(wall, zone)
                continue
            both = [first]
            second = wall.replace(fold=1).astimezone(UTC)
            if second != first and cron.on_the_clock:
                both.append(second)  # the clock shows this time twice
            for instant in reversed(both) if backwards else both:
                yield wall, instant


# A clock change moves an instant by less than this against its place in wall-clock order.
_CLOCK_CHANGE = timedelta(hours=3)


def _end_of_gap(wall: datetime, zone: tzinfo) -> datetime:
    """The first whole minute the clock shows after skipping ``wall``."""
    candidate = wall
    for _ in range(24 * 60):
        candidate += timedelta(minutes=1)
        instant = candidate.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return instant
    raise ValueError(f"no time after the clock change at {wall:%Y-%m-%d %H:%M}")
