"""When something runs, as the config writes it: a crontab(5) line of five fields, or
``every DURATION``. This module only reads the text; ``firebreak.daemon.schedules`` works out
when a schedule fires.

Cron follows crontab(5) exactly, as Debian's cron does: fields are minute (0-59), hour (0-23),
day of month (1-31), month (1-12 or jan-dec) and day of week (0-7 or sun-sat, where 0 and 7
are both Sunday); each is ``*``, a number or name, a range ``a-b``, a step ``*/n`` or
``a-b/n``, or a comma list of those. When both the day of month and the day of week are
restricted (neither starts with ``*``), a day matches if **either** does: ``0 4 1,15 * 5``
runs on the 1st, the 15th and every Friday.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator

from firebreak.config.durations import parse_duration

EVERY = "every "
# crontab(5)'s names are English whatever the locale.
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# crontab(5)'s nicknames (@reboot has no place in a daemon's schedule).
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _WEEKDAYS),
)


@dataclass(frozen=True)
class Cron:
    """A crontab(5) schedule, its fields expanded. Weekdays count from Sunday = 0."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    # The day-of-month / day-of-week field starts with "*" (then both must match a day).
    any_day: bool
    any_weekday: bool
    # The minute or hour field has a "*": the job runs on the clock as it is, even across a
    # daylight-saving change (crontab(5)); a job at fixed times runs once a day whatever the
    # clock does.
    on_the_clock: bool


@dataclass(frozen=True)
class Every:
    """``every DURATION``: a fixed interval from when the daemon started."""

    text: str
    interval: timedelta


Schedule = Cron | Every


def parse_schedule(text: str) -> Schedule:
    """Raise ValueError saying what is wrong and which forms are accepted."""
    stripped = " ".join(text.split())
    if stripped.startswith(EVERY):
        return Every(stripped, parse_duration(stripped[len(EVERY) :]))
    if stripped.startswith("@"):
        if stripped.lower() not in _NICKNAMES:
            known = ", ".join(_NICKNAMES)
            raise ValueError(f"{text!r} is not a cron nickname the daemon knows ({known})")
        parsed = parse_schedule(_NICKNAMES[stripped.lower()])
        assert isinstance(parsed, Cron)
        return replace(parsed, text=stripped)
    parts = stripped.split(" ")
    if len(parts) != 5:
        raise ValueError(
            f"{text!r} is neither a five-field cron line (minute hour day month weekday, as in "
            "crontab(5)) nor 'every DURATION' (every 6h)"
        )
    values = [_expand(part, field, text) for part, field in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in values[4])  # 7 is Sunday too
    cron = Cron(
        text=stripped,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        any_day=parts[2].startswith("*"),
        any_weekday=parts[4].startswith("*"),
        on_the_clock="*" in parts[0] or "*" in parts[1],
    )
    if not _can_fire(cron):
        raise ValueError(f"{text!r} never fires: no month has that day")
    return cron


def _expand(part: str, field: _Field, text: str) -> frozenset[int]:
    found: set[int] = set()
    for item in part.lower().split(","):
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{text!r}: {field.name}: {item!r} needs a step of 1 or more")
            step = int(step_text)
        if body == "*":
            low, high = field.low, field.high
        elif "-" in body:
            first, _, last = body.partition("-")
            low, high = _value(first, field, text), _value(last, field, text)
            if low > high:
                raise ValueError(
                    f"{text!r}: {field.name}: the range {body!r} runs backwards "
                    "(crontab(5) ranges do not wrap around)"
                )
        elif slash:
            raise ValueError(
                f"{text!r}: {field.name}: a step goes with a range or *, as in "
                f"{body}-{field.high}/{step} or */{step}"
            )
        else:
            low = high = _value(body, field, text)
        found.update(range(low, high + 1, step))
    return frozenset(found)


def _value(token: str, field: _Field, text: str) -> int:
    if token in field.names:
        return field.names[token]
    if not token.isdigit():
        known = f" or a name ({', '.join(field.names)})" if field.names else ""
        raise ValueError(f"{text!r}: {field.name}: {token!r} is not a number{known}")
    number = int(token)
    if not field.low <= number <= field.high:
        raise ValueError(
            f"{text!r}: {field.name}: {number} is out of range {field.low}-{field.high}"
        )
    return number


def _can_fire(cron: Cron) -> bool:
    """Some month has one of the days (February counted with its 29th)."""
    if not (cron.any_day or cron.any_weekday) and cron.weekdays:
        return True  # either field may match, and every month has every weekday
    longest = {month: calendar.monthrange(2024, month)[1] for month in range(1, 13)}
    return any(day <= longest[month] for month in cron.months for day in cron.days)


def _checked(text: str) -> str:
    parse_schedule(text)
    return text


# A schedule as the config holds it: its text, checked when the config is read.
ScheduleText = Annotated[str, AfterValidator(_checked)]
