"""Reading schedules as crontab(5) writes them, or 'every DURATION'."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from firebreak.config.schedules import Cron, Every, parse_schedule


def _cron(text: str) -> Cron:
    schedule = parse_schedule(text)
    assert isinstance(schedule, Cron)
    return schedule


def test_every_duration() -> None:
    assert parse_schedule("every 6h") == Every("every 6h", timedelta(hours=6))
    assert parse_schedule("  every   90s ") == Every("every 90s", timedelta(seconds=90))


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("0", {0}),
        ("7", {0}),  # 7 is Sunday too
        ("0,7", {0}),
        ("sun", {0}),
        ("SUN", {0}),
        ("mon-fri", {1, 2, 3, 4, 5}),
        ("1-5", {1, 2, 3, 4, 5}),
        ("5-7", {5, 6, 0}),
        ("*/2", {0, 2, 4, 6}),
        ("1-7/3", {1, 4, 0}),
        ("sat,sun", {6, 0}),
        ("*", {0, 1, 2, 3, 4, 5, 6}),
    ],
)
def test_day_of_week_counts_from_sunday(field: str, expected: set[int]) -> None:
    assert _cron(f"0 5 * * {field}").weekdays == expected


def test_fields_names_ranges_and_steps() -> None:
    cron = _cron("*/15 9-17/4 1,15 jan-mar,Dec *")
    assert cron.minutes == {0, 15, 30, 45}
    assert cron.hours == {9, 13, 17}
    assert cron.days == {1, 15}
    assert cron.months == {1, 2, 3, 12}
    assert cron.any_weekday and not cron.any_day and cron.on_the_clock
    assert not _cron("30 2 * * *").on_the_clock


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("daily", "neither a five-field cron line"),
        ("* * * *", "neither a five-field cron line"),
        ("every", "neither a five-field cron line"),
        ("every day", "not a duration"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 0 0 * *", "day of month: 0 is out of range 1-31"),
        ("0 0 * 13 *", "month: 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week: 8 is out of range 0-7"),
        ("0 0 * * fri-mon", "runs backwards"),
        ("0 0 * * funday", "day of week: 'funday' is not a number or a name (sun, mon"),
        ("5/15 * * * *", "a step goes with a range or *, as in 5-59/15 or */15"),
        ("*/0 * * * *", "needs a step of 1 or more"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30,31 feb *", "never fires"),
    ],
)
def test_mistakes_are_explained(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_schedule(text)
    assert says in str(caught.value), str(caught.value)


def test_a_day_that_only_some_years_have_still_fires() -> None:
    assert _cron("0 0 29 2 *").days == {29}
    # Both restricted: the 31st of February never comes, but Mondays in February do.
    assert _cron("0 0 31 2 mon").weekdays == {1}


NICKNAMES = {
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@hourly": "0 * * * *",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@pytest.mark.parametrize(("nickname", "same_as"), NICKNAMES.items())
def test_crontab_nicknames(nickname: str, same_as: str) -> None:
    parsed, plain = _cron(nickname), _cron(same_as)
    assert parsed.text == nickname
    assert parsed == replace(plain, text=nickname)
    with pytest.raises(ValueError, match="not a cron nickname"):
        parse_schedule("@reboot")
