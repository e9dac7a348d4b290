"""`firebreak db copy`: a host's SQLite history into a fleet's PostgreSQL, losing nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from firebreak.clock import utcnow
from firebreak.history.copy import CopyRefused, copy_host
from firebreak.history.database import make_engine, upgrade
from firebreak.history.records import RunOutcome, all_runs, finish_run, prune_runs, start_run
from firebreak.outcomes import Status
from tests.support.servers import PostgresCluster
from tests.unit.history.test_series import HOSTS, _everything_read, _random_history


def _key(run: object) -> tuple[str, ...]:
    return tuple(
        str(getattr(run, name))
        for name in ("host", "operation", "source", "site", "started_at", "status", "snapshot_id")
    )


@pytest.fixture
def fleet(postgres_cluster: PostgresCluster) -> Engine:
    engine = make_engine(postgres_cluster.create_database())
    upgrade(engine)
    return engine


def test_a_copied_history_answers_as_the_original_and_a_second_copy_adds_nothing(
    tmp_path: Path, fleet: Engine
) -> None:
    own = make_engine(f"sqlite:///{tmp_path / 'history.db'}")
    upgrade(own)
    _random_history(own, seed=21, runs=250)
    # Retention pruned part of web1's history here: the totals still count it.
    prune_runs(own, host="web1", before=utcnow() + timedelta(days=1), batch=40)
    # The fleet's database already holds another host's runs.
    for status in (Status.SUCCESS, Status.FAILED):
        run_id = start_run(
            fleet, source="www", site="a", operation="backup", host="db9", restic_version=None
        )
        finish_run(fleet, run_id, RunOutcome(status))
    before = {host: _everything_read(own, host) for host in HOSTS}

    copied = copy_host(own, fleet, "web1")
    assert copied.runs == len([run for run in all_runs(own) if run.host == "web1"])
    assert copied.already == 0
    assert _everything_read(fleet, "web1") == _comparable(before["web1"], own, fleet, "web1")
    mine = sorted(_key(run) for run in all_runs(own) if run.host == "web1")
    assert sorted(_key(run) for run in all_runs(fleet) if run.host == "web1") == mine

    again = copy_host(own, fleet, "web1")
    assert (again.runs, again.cycles, again.repositories) == (0, 0, 0)
    assert again.already == copied.runs + copied.cycles + copied.repositories
    assert sorted(_key(run) for run in all_runs(fleet) if run.host == "web1") == mine
    assert _everything_read(fleet, "web1") == _comparable(before["web1"], own, fleet, "web1")


def _comparable(answer: object, source: Engine, target: Engine, host: str) -> object:
    """An answer read at the source, with its run ids as the target numbers them."""
    at_target = {_key(run): run.id for run in all_runs(target) if run.host == host}
    ids = {run.id: at_target[_key(run)] for run in all_runs(source) if run.host == host}

    def renumber(value: object) -> object:
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "run":
            return ("run", ids[value[1]])  # type: ignore[index]
        if isinstance(value, dict):
            return {key: renumber(item) for key, item in value.items()}
        if isinstance(value, list):
            return [renumber(item) for item in value]
        return value

    return renumber(answer)


def test_a_history_with_a_run_going_on_is_not_copied(tmp_path: Path, fleet: Engine) -> None:
    own = make_engine(f"sqlite:///{tmp_path / 'history.db'}")
    upgrade(own)
    start_run(own, source="www", site="a", operation="backup", host="web1", restic_version=None)
    with pytest.raises(CopyRefused, match="still running in the source history: stop the daemon"):
        copy_host(own, fleet, "web1")
    assert all_runs(fleet) == []
