"""Catch-up: a source is overdue when its schedule's last wanted time passed without a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from firebreak.config import Config, load_config
from firebreak.daemon.catchup import overdue_sources
from firebreak.history.records import finish_cycle, start_cycle
from firebreak.outcomes import Status

SITE = {
    "repository": "/r",
    "password_command": "cat /x",
    "location": {"provider": "p", "region": "r", "datacenter": "d", "country": "FR"},
}


def _config(tmp_path: Path, schedule: str, **top: Any) -> Config:
    path = tmp_path / "firebreak.yaml"
    source = {"paths": ["/w"], "sites": ["a"], "schedule": schedule}
    data = {"host": "h", "sites": {"a": SITE}, "sources": {"www": source}, **top}
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _ran(engine: Engine, when: datetime, host: str = "h") -> None:
    """A finished cycle of www (on host) that started at when."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from firebreak.history.models import Cycle

    cycle = start_cycle(engine, source="www", trigger="schedule", host=host, sites=1)
    finish_cycle(engine, cycle, status=Status.SUCCESS, succeeded=1)
    with Session(engine) as session, session.begin():
        session.execute(update(Cycle).where(Cycle.id == cycle).values(started_at=when))


WEDNESDAY = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_a_source_that_never_ran_is_overdue(engine: Engine, tmp_path: Path) -> None:
    assert overdue_sources(_config(tmp_path, "0 3 * * *"), engine, WEDNESDAY) == ["www"]


def test_monday_and_tuesday_are_not_due_on_wednesday(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, "0 3 * * 1,2")
    _ran(engine, datetime(2026, 12, 1, 3, 0, tzinfo=UTC))  # Tuesday's run
    assert overdue_sources(config, engine, WEDNESDAY) == []
    assert overdue_sources(config, engine, WEDNESDAY + timedelta(days=5)) == ["www"]


def test_a_day_across_a_clock_change_is_not_a_missed_run(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, "0 3 * * *", timezone="Europe/Paris")
    _ran(engine, datetime(2026, 10, 24, 1, 0, tzinfo=UTC))  # 03:00 CEST on the 24th
    # 25 October 01:01 UTC is 02:01 CET: 24 h and 1 min later, but 03:00 has not come yet.
    assert overdue_sources(config, engine, datetime(2026, 10, 25, 1, 1, tzinfo=UTC)) == []
    assert overdue_sources(config, engine, datetime(2026, 10, 25, 2, 2, tzinfo=UTC)) == ["www"]


@pytest.mark.parametrize(("minutes", "overdue"), [(20, False), (30, False), (32, True)])
def test_a_run_waiting_for_its_jitter_is_not_late(
    engine: Engine, tmp_path: Path, minutes: int, overdue: bool
) -> None:
    config = _config(tmp_path, "0 3 * * *", daemon={"jitter": "30m"})
    _ran(engine, datetime(2026, 12, 1, 3, 12, tzinfo=UTC))  # yesterday, 12 min of jitter
    now = datetime(2026, 12, 2, 3, minutes, tzinfo=UTC)  # today's run may start until 03:30
    assert overdue_sources(config, engine, now) == (["www"] if overdue else [])


def test_an_interval_is_due_once_it_has_passed(engine: Engine, tmp_path: Path) -> None:
    config = _config(tmp_path, "every 6h")
    _ran(engine, WEDNESDAY - timedelta(hours=5))
    assert overdue_sources(config, engine, WEDNESDAY) == []
    assert overdue_sources(config, engine, WEDNESDAY + timedelta(hours=2)) == ["www"]


@pytest.mark.parametrize("schedule", ["every 6h", "0 3 * * *"])
def test_a_clock_that_jumps_back_or_forward_catches_up_once_and_never_in_a_loop(
    engine: Engine, tmp_path: Path, schedule: str
) -> None:
    config = _config(tmp_path, schedule)
    _ran(engine, WEDNESDAY)
    # Set back 3 hours (an NTP correction, a wrong RTC): the last run is "in the future".
    assert overdue_sources(config, engine, WEDNESDAY - timedelta(hours=3)) == []
    # Forward past the next wanted time (a machine that slept over it): due, once.
    later = WEDNESDAY + timedelta(days=1, hours=1)
    assert overdue_sources(config, engine, later) == ["www"]
    _ran(engine, later)
    assert overdue_sources(config, engine, later + timedelta(minutes=1)) == []


def test_another_host_s_cycles_of_a_source_of_the_same_name_do_not_count(
    engine: Engine, tmp_path: Path
) -> None:
    _ran(engine, WEDNESDAY - timedelta(hours=1), host="other")
    assert overdue_sources(_config(tmp_path, "0 3 * * *"), engine, WEDNESDAY) == ["www"]
    _ran(engine, WEDNESDAY - timedelta(hours=1))
    assert overdue_sources(_config(tmp_path, "0 3 * * *"), engine, WEDNESDAY) == []


def test_a_renamed_host_catches_up_under_the_name_its_runs_are_recorded_with(
    engine: Engine, tmp_path: Path
) -> None:
    from firebreak.actions.runtime import Runtime
    from firebreak.restic.program import ResticVersion

    old = _config(tmp_path, "0 3 * * *", host="old")
    rt = Runtime(config=old, engine=engine, restic_version=ResticVersion(0, 14, 0), host="old")
    _ran(engine, WEDNESDAY - timedelta(hours=1), host=rt.host)
    assert overdue_sources(old, engine, WEDNESDAY, rt.host) == []
    # A reload that renames the host applies at once: its runs from now on are the new
    # name's, and its catch-up asks for that name (one cycle, then none).
    renamed = rt.reconfigured(_config(tmp_path, "0 3 * * *", host="new"))
    assert renamed.host == "new"
    assert overdue_sources(renamed.config, engine, WEDNESDAY, renamed.host) == ["www"]
    _ran(engine, WEDNESDAY - timedelta(minutes=1), host=renamed.host)
    assert overdue_sources(renamed.config, engine, WEDNESDAY, renamed.host) == []
