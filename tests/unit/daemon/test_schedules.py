"""When schedules fire: crontab(5) on the wall clock of the config's time zone."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from firebreak.config.schedules import Cron, parse_schedule
from firebreak.daemon.schedules import last_due, next_fire, period, previous_fire
from firebreak.daemon.triggers import CrontabTrigger, trigger

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron(text: str) -> Cron:
    schedule = parse_schedule(text)
    assert isinstance(schedule, Cron)
    return schedule


def _fires(text: str, after: datetime, count: int, zone: ZoneInfo | None = None) -> list[datetime]:
    cron, zone_ = _cron(text), zone or UTC
    found = []
    for _ in range(count):
        after = next_fire(cron, after, zone_)
        found.append(after)
        after = after.astimezone(UTC) + timedelta(microseconds=1)
    return found


@pytest.mark.parametrize("day", range(8))
def test_each_weekday_number_is_the_day_crontab_5_says(day: int) -> None:
    [fire] = _fires(f"0 5 * * {day}", MONDAY, 1)
    assert fire.strftime("%a").lower() == NAMES[day % 7]
    assert fire.hour == 5 and MONDAY <= fire < MONDAY + timedelta(days=7)


@pytest.mark.parametrize("name", NAMES)
def test_each_weekday_name(name: str) -> None:
    [fire] = _fires(f"0 5 * * {name}", MONDAY, 1)
    assert fire.strftime("%a").lower() == name


def test_the_default_check_schedule_runs_on_sundays() -> None:
    assert [f.strftime("%a %d %H:%M") for f in _fires("0 5 * * 0", MONDAY, 2)] == [
        "Sun 06 05:00",
        "Sun 13 05:00",
    ]


def test_weekdays_monday_to_friday() -> None:
    fires = _fires("30 2 * * 1-5", MONDAY, 7)
    assert [f.strftime("%a") for f in fires] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]
    assert _fires("30 2 * * mon-fri", MONDAY, 7) == fires


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    start = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    fires = _fires("0 4 1,15 * 5", start, 8)
    assert [f.strftime("%d %a") for f in fires] == [
        "01 Sun",  # the 1st
        "06 Fri",
        "13 Fri",
        "15 Sun",  # the 15th
        "20 Fri",
        "27 Fri",
        "01 Tue",  # December 1st
        "04 Fri",
    ]


def test_a_star_day_field_means_both_must_match() -> None:
    # "*/2" starts with "*": odd days of the month that are also Fridays.
    fires = _fires("0 4 */2 * fri", datetime(2026, 11, 1, tzinfo=UTC), 3)
    assert [f.strftime("%d %a") for f in fires] == ["13 Fri", "27 Fri", "11 Fri"]


def test_february_29th_waits_for_a_leap_year() -> None:
    [fire] = _fires("0 0 29 2 *", MONDAY, 1)
    assert fire == datetime(2028, 2, 29, tzinfo=UTC)


def test_cron_fires_on_the_configured_zones_clock() -> None:
    [fire] = _fires("30 2 * * *", datetime(2026, 11, 29, 12, 0, tzinfo=UTC), 1, PARIS)
    assert fire.astimezone(UTC) == datetime(2026, 11, 30, 1, 30, tzinfo=UTC)  # 02:30 CET


def test_a_fixed_time_the_clock_skips_runs_right_after_the_change() -> None:
    # Paris, 29 March 2026: 02:00 becomes 03:00.
    fires = _fires("30 2 * * *", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 2, PARIS)
    assert [f.strftime("%d %H:%M %Z") for f in fires] == ["29 03:00 CEST", "30 02:30 CEST"]


def test_a_job_on_the_clock_skips_the_hour_that_does_not_exist() -> None:
    fires = _fires("*/30 * * * *", datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 3, PARIS)
    assert [f.strftime("%H:%M %Z") for f in fires] == ["01:30 CET", "03:00 CEST", "03:30 CEST"]


def test_a_fixed_time_the_clock_shows_twice_runs_once() -> None:
    # Paris, 25 October 2026: 03:00 becomes 02:00 again.
    fires = _fires("30 2 * * *", datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 2, PARIS)
    assert [f.astimezone(UTC).strftime("%d %H:%M") for f in fires] == ["25 00:30", "26 01:30"]


def test_a_job_on_the_clock_runs_again_in_the_repeated_hour() -> None:
    fires = _fires("0 * * * *", datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 3, PARIS)
    assert [f.strftime("%H:%M %Z") for f in fires] == ["02:00 CEST", "02:00 CET", "03:00 CET"]


def test_the_trigger_fires_after_its_last_run_and_adds_at_most_its_jitter() -> None:
    cron = _cron("0 3 * * *")
    plain = CrontabTrigger(cron, PARIS)
    first = plain.get_next_fire_time(None, MONDAY)
    assert first == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 03:00 CET
    assert plain.get_next_fire_time(first, first) == first + timedelta(days=1)
    jittered = trigger(cron, PARIS, timedelta(minutes=5))
    for _ in range(20):
        fire = jittered.get_next_fire_time(None, MONDAY)
        assert first <= fire <= first + timedelta(minutes=5)


def test_the_trigger_runs_a_job_on_the_clock_in_both_repeated_hours() -> None:
    hourly = CrontabTrigger(_cron("0 * * * *"), PARIS)
    first_two = datetime(2026, 10, 25, 0, 0, tzinfo=UTC).astimezone(PARIS)  # 02:00 CEST
    second_two = hourly.get_next_fire_time(first_two, first_two)
    assert second_two.strftime("%H:%M %Z") == "02:00 CET"
    assert hourly.get_next_fire_time(second_two, second_two).strftime("%H:%M %Z") == "03:00 CET"


def _apscheduler(cron: Cron, text: str) -> CronTrigger | OrTrigger:
    """An independent opinion for UTC: APScheduler's own cron, weekdays by name, and the
    either-day rule as two triggers."""
    minute, hour, day, month, _ = text.split()
    weekdays = ",".join(NAMES[d] for d in sorted(cron.weekdays))
    if cron.any_day or cron.any_weekday:
        fields = {"minute": minute, "hour": hour, "month": month, "timezone": UTC}
        return CronTrigger(day=day, day_of_week=weekdays, **fields)
    fields = {"minute": minute, "hour": hour, "month": month, "timezone": UTC}
    return OrTrigger([CronTrigger(day=day, **fields), CronTrigger(day_of_week=weekdays, **fields)])


def test_random_lines_agree_with_an_independent_cron() -> None:
    rng = random.Random(20261202)

    def field(low: int, high: int, star: float) -> str:
        roll = rng.random()
        if roll < star:
            return "*" if rng.random() < 0.5 else f"*/{rng.randint(2, 5)}"
        if roll < star + 0.3:
            a = rng.randint(low, high)
            return f"{a}-{rng.randint(a, high)}"
        return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), rng.randint(1, 3))))

    for _ in range(60):
        limits = ((0, 59, 0.4), (0, 23, 0.5), (1, 28, 0.6), (1, 12, 0.7), (0, 6, 0.5))
        text = " ".join(field(*limit) for limit in limits)
        cron = _cron(text)
        oracle = _apscheduler(cron, text)
        after = MONDAY + timedelta(minutes=rng.randint(0, 400_000))
        mine = _fires(text, after, 4)
        theirs, previous = [], None
        for _ in range(4):
            previous = oracle.get_next_fire_time(previous, previous or after)
            theirs.append(previous)
        assert mine == theirs, text
        # previous_fire agrees: each fire is its own previous one, and nothing in between.
        for fire in mine:
            assert previous_fire(cron, fire, UTC) == fire, text
            gap = previous_fire(cron, fire - timedelta(microseconds=1), UTC)
            assert gap < fire and next_fire(cron, gap + timedelta(microseconds=1), UTC) == fire


def test_the_previous_fire_across_clock_changes() -> None:
    daily = _cron("30 2 * * *")
    # The day the clock skips 02:30 (Paris, 29 March 2026): it ran at 03:00 instead.
    skipped = previous_fire(daily, datetime(2026, 3, 29, 3, 0, tzinfo=UTC), PARIS)
    assert skipped.strftime("%d %H:%M %Z") == "29 03:00 CEST"
    # The day the clock shows 02:30 twice: it ran at the first one.
    twice = previous_fire(daily, datetime(2026, 10, 25, 3, 0, tzinfo=UTC), PARIS)
    assert twice.astimezone(UTC).strftime("%d %H:%M") == "25 00:30"


def test_what_is_due_allows_a_scheduled_run_its_jitter() -> None:
    daily = parse_schedule("0 3 * * *")
    slack = timedelta(minutes=6)
    assert last_due(daily, UTC, datetime(2026, 12, 2, 3, 5, tzinfo=UTC), slack) == datetime(
        2026, 12, 1, 3, 0, tzinfo=UTC
    )
    assert last_due(daily, UTC, datetime(2026, 12, 2, 3, 7, tzinfo=UTC), slack) == datetime(
        2026, 12, 2, 3, 0, tzinfo=UTC
    )
    every = parse_schedule("every 6h")
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert last_due(every, UTC, now, slack) == now - timedelta(hours=6, minutes=6)


def test_the_period_of_a_schedule_is_elapsed_time_and_the_longer_of_its_last_gaps() -> None:
    paris = ZoneInfo("Europe/Paris")
    monthly = parse_schedule("0 6 1 * *")
    assert isinstance(monthly, Cron)
    # Just after February's run: since January's, 31 days have passed (February has 28).
    just_after = datetime(2025, 2, 1, 5, 0, 30, tzinfo=UTC)
    assert period(monthly, just_after, paris) == timedelta(days=31)
    # Daily at 02:30 over the spring change (02:30 does not exist that night): elapsed time,
    # not the wall clock's difference.
    nightly = parse_schedule("30 2 * * *")
    spring = period(nightly, datetime(2025, 3, 30, 12, 0, tzinfo=UTC), paris)
    assert timedelta(hours=23) <= spring <= timedelta(hours=24)
    half_hourly = parse_schedule("*/30 2 * * *")
    autumn = datetime(2025, 10, 26, 0, 40, tzinfo=UTC)  # inside the hour the clock repeats
    assert timedelta(0) < period(half_hourly, autumn, paris) <= timedelta(days=1)
    assert period(parse_schedule("every 6h"), autumn, paris) == timedelta(hours=6)
