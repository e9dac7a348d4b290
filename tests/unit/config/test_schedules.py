"""Schedules: cron in the config's time zone, or 'every DURATION'; and the retry backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from firebreak.actions.backup import RetryPlan
from firebreak.config.schedules import parse_schedule


def test_cron_period_is_the_gap_between_two_fire_times() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert parse_schedule("15 2 * * *").period(UTC, now) == timedelta(days=1)
    assert parse_schedule("*/10 * * * *").period(UTC, now) == timedelta(minutes=10)
    assert parse_schedule("0 3 * * 1").period(UTC, now) == timedelta(weeks=1)


def test_every_schedule() -> None:
    schedule = parse_schedule("every 6h")
    assert schedule.interval == timedelta(hours=6)
    assert schedule.period(UTC, datetime.now(UTC)) == timedelta(hours=6)


def test_cron_fires_in_the_configured_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    trigger = parse_schedule("30 2 * * *").trigger(paris)
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, now)
    assert fire is not None and fire.astimezone(UTC).hour == 1  # 02:30 CET is 01:30 UTC


@pytest.mark.parametrize("text", ["daily", "every", "every day", "* * * *", "99 * * * *"])
def test_bad_schedules(text: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(text)


def test_retry_backoff_doubles_with_jitter_and_stops() -> None:
    plan = RetryPlan(attempts=3, initial_delay=10, max_delay=25)
    waits = [plan.delay(n, now=0) for n in range(4)]
    assert waits[3] is None
    assert 5 <= waits[0] <= 10  # type: ignore[operator]
    assert 10 <= waits[1] <= 20  # type: ignore[operator]
    assert 12.5 <= waits[2] <= 25  # type: ignore[operator]  (capped at max_delay)


def test_retries_never_run_into_the_next_cycle() -> None:
    plan = RetryPlan(attempts=5, initial_delay=60, max_delay=600, deadline=100.0)
    assert plan.delay(0, now=0) is not None
    assert plan.delay(0, now=75) is None  # 30–60 s more would pass the deadline
