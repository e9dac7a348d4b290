"""Retries of transient failures: backoff with jitter, never into the next cycle."""

from __future__ import annotations

from firebreak.actions.backup import RetryPlan


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
