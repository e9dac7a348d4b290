"""The run history on SQLite and on a real PostgreSQL (throwaway cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, column, table, text

from firebreak.config.model import Config
from firebreak.history.database import (
    SCHEMA_HEAD,
    DatabaseBehind,
    alembic_config,
    make_engine,
    require_current,
    schema_state,
    upgrade,
)
from firebreak.history.freshness import Proof, freshness
from firebreak.history.latest import consecutive_failures, durations, latest_runs, run_counts
from firebreak.history.models import Base
from firebreak.history.records import (
    RunOutcome,
    finish_cycle,
    finish_run,
    left_a_lock,
    start_cycle,
    start_run,
)
from firebreak.outcomes import Status
from tests.support.history import old_run

LOCATION = {"provider": "p", "region": "r", "datacenter": "d", "country": "FR"}


def _run(
    engine: Engine,
    site: str,
    status: Status,
    *,
    source: str = "www",
    snapshot: str = "s",
    host: str = "h",
) -> int:
    run_id = start_run(
        engine, source=source, site=site, operation="backup", host=host, restic_version="0.14.0"
    )
    finish_run(
        engine,
        run_id,
        RunOutcome(
            status,
            exit_code=0 if status == Status.SUCCESS else 1,
            snapshot_id=snapshot if status == Status.SUCCESS else None,
            bytes_added=100 if status == Status.SUCCESS else None,
            error_class=None if status == Status.SUCCESS else "SiteUnreachable",
            error_message=None if status == Status.SUCCESS else "connection refused",
        ),
    )
    return run_id


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_an_older_history_is_upgraded_with_every_row_kept(database_url: str) -> None:
    from alembic import command

    engine = make_engine(database_url)
    try:
        command.upgrade(alembic_config(engine), "0001")
        old_run(engine, "a", Status.FAILED)
        old_run(engine, "a", Status.SUCCESS)
        old_run(engine, "b", Status.FAILED)
        old_run(engine, "b", Status.FAILED)
        with pytest.raises(DatabaseBehind, match="run `firebreak db upgrade`"):
            require_current(engine)
        before = upgrade(engine)
        assert (before.current, schema_state(engine).current) == ("0001", SCHEMA_HEAD)
        latest = latest_runs(engine, host="h")
        assert {key: entry.last_attempt.status for key, entry in latest.items()} == {  # type: ignore[union-attr]
            ("www", "a"): Status.SUCCESS,
            ("www", "b"): Status.FAILED,
        }
        # The series and the totals were filled from the rows that were there.
        assert consecutive_failures(engine, host="h") == {("www", "b"): 2}
        counts = {(c.site, c.status): c.count for c in run_counts(engine, host="h")}
        assert counts == {("a", "failed"): 1, ("a", "success"): 1, ("b", "failed"): 2}
        assert durations(engine, host="h")[0].buckets[4] == ("60", 4)
        # A run of the whole repository has no source now.
        run_id = start_run(
            engine, source=None, site="a", operation="check", host="h", restic_version="0.14.0"
        )
        assert finish_run(engine, run_id, RunOutcome(Status.SUCCESS)).source is None
        # And back, if an older firebreak must read it again: the site-wide run keeps a source.
        command.downgrade(alembic_config(engine), "0001")
        assert schema_state(engine).current == "0001"
        with engine.connect() as connection:
            sources = connection.execute(text("SELECT source FROM runs ORDER BY id")).scalars()
            assert list(sources) == ["www", "www", "www", "www", ""]
    finally:
        engine.dispose()


def test_upgrading_to_0004_makes_a_local_path_its_hosts_own(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import select

    from firebreak.history.models import SiteRepository

    engine = make_engine(database_url)
    try:
        command.upgrade(alembic_config(engine), "0003")
        rows = table(
            "site_repositories",
            *(column(n) for n in ("host", "site", "repository", "repository_id", "recorded_at")),
        )
        with engine.begin() as connection:
            for host, where in (("web1", "local:/srv/a"), ("web2", "rest:https://b.invalid:443/x")):
                connection.execute(
                    rows.insert().values(
                        host=host,
                        site="a",
                        repository=where,
                        repository_id="f" * 64,
                        recorded_at=datetime(2026, 11, 1),
                    )
                )
        command.upgrade(alembic_config(engine), "0004")
        with engine.connect() as connection:
            found = sorted(connection.execute(select(SiteRepository.repository)).scalars())
        assert found == ["rest:https://b.invalid:443/x", "web1:local:/srv/a"]
        command.downgrade(alembic_config(engine), "0003")
        with engine.connect() as connection:
            back = sorted(
                connection.execute(text("SELECT repository FROM site_repositories")).scalars()
            )
        assert back == ["local:/srv/a", "rest:https://b.invalid:443/x"]
    finally:
        engine.dispose()


def test_a_run_is_running_until_finished(engine: Engine) -> None:
    cycle = start_cycle(engine, source="www", trigger="cli", host="h", sites=1)
    run_id = start_run(
        engine,
        source="www",
        site="a",
        operation="backup",
        host="h",
        restic_version="0.14.0",
        cycle_id=cycle,
        pid=123,
    )
    latest = latest_runs(engine, host="h")[("www", "a")]
    assert latest.last_attempt is not None and latest.last_attempt.status == Status.RUNNING
    assert latest.last_success is None
    run = finish_run(engine, run_id, RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id="abc"))
    finish_cycle(engine, cycle, status=Status.SUCCESS, succeeded=1)
    assert run.status == Status.SUCCESS and run.snapshot_id == "abc"
    assert run.finished_at is not None and run.finished_at.tzinfo is UTC
    assert run.duration_seconds is not None and run.duration_seconds >= 0


def test_latest_attempt_and_latest_success_per_source_and_site(engine: Engine) -> None:
    _run(engine, "a", Status.SUCCESS, snapshot="old")
    _run(engine, "a", Status.SUCCESS, snapshot="new")
    _run(engine, "a", Status.FAILED)
    _run(engine, "b", Status.FAILED)
    _run(engine, "a", Status.SUCCESS, source="db", snapshot="db1")
    latest = latest_runs(engine, host="h")
    assert set(latest) == {("www", "a"), ("www", "b"), ("db", "a")}
    www_a = latest[("www", "a")]
    assert www_a.last_attempt is not None and www_a.last_attempt.status == Status.FAILED
    assert www_a.last_success is not None and www_a.last_success.snapshot_id == "new"
    assert latest[("www", "b")].last_success is None
    assert set(latest_runs(engine, sources=["db"], host="h")) == {("db", "a")}


def test_two_hosts_with_a_source_of_the_same_name_never_see_each_other(engine: Engine) -> None:
    from firebreak.history.latest import first_successes
    from firebreak.history.records import last_processed_bytes

    # web2 backs up its own "www" fine; web1's has only failed: web1 must not look safe.
    _run(engine, "a", Status.SUCCESS, host="web2")
    _run(engine, "a", Status.FAILED, host="web1")
    _run(engine, "a", Status.FAILED, host="web1")
    mine = latest_runs(engine, host="web1")[("www", "a")]
    assert mine.last_success is None
    assert mine.last_attempt is not None and mine.last_attempt.host == "web1"
    assert latest_runs(engine, host="web2")[("www", "a")].last_success is not None
    assert consecutive_failures(engine, host="web1") == {("www", "a"): 2}
    assert consecutive_failures(engine, host="web2") == {}
    assert first_successes(engine, host="web1") == {}
    assert set(first_successes(engine, host="web2")) == {("www", "a")}
    assert {(c.status, c.count) for c in run_counts(engine, host="web1")} == {("failed", 2)}
    assert [d.buckets[-1] for d in durations(engine, host="web1")] == [("+Inf", 2)]
    assert [d.buckets[-1] for d in durations(engine, host="web2")] == [("+Inf", 1)]
    assert last_processed_bytes(engine, "www", host="web1") is None
    assert latest_runs(engine, host="nobody") == {}


def test_freshness_and_safety_from_the_history(engine: Engine) -> None:
    config = Config.model_validate(
        {
            "sites": {
                name: {"repository": f"/r/{name}", "password_command": "x", "location": LOCATION}
                for name in ("a", "b", "c")
            },
            "sources": {
                "www": {
                    "paths": ["/w"],
                    "sites": ["a", "b", "c"],
                    "max_age": "1h",
                    "min_fresh_sites": 2,
                }
            },
        }
    )
    _run(engine, "a", Status.SUCCESS)
    _run(engine, "b", Status.SUCCESS)
    _run(engine, "c", Status.FAILED)
    now = datetime.now(UTC)
    [www] = freshness(config, latest_runs(engine, host="h"), now)
    assert [s.fresh for s in www.sites] == [True, True, False]
    assert www.fresh_sites == 2 and www.required_fresh_sites == 2 and www.safe
    assert www.sites[2].last_error == "SiteUnreachable: connection refused"
    assert www.sites[2].last_outcome == "failed"
    [later] = freshness(config, latest_runs(engine, host="h"), now + timedelta(hours=2))
    assert later.fresh_sites == 0 and not later.safe


def test_an_empty_database_is_created_on_first_use(database_url: str) -> None:
    engine = make_engine(database_url)
    assert schema_state(engine).current is None
    require_current(engine)
    assert schema_state(engine).up_to_date
    engine.dispose()


def test_a_schema_newer_than_this_firebreak_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(DatabaseBehind, match="newer than this firebreak knows"):
        require_current(engine)
    engine.dispose()


def test_a_foreign_database_is_not_touched(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id INTEGER)"))
    with pytest.raises(DatabaseBehind, match="another application's database"):
        require_current(engine)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'h.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_a_long_error_message_is_cut_to_its_column(engine: Engine) -> None:
    run_id = start_run(
        engine, source="www", site="a", operation="backup", host="h", restic_version=None
    )
    run = finish_run(
        engine, run_id, RunOutcome(Status.FAILED, error_class="X", error_message="é" * 2000)
    )
    assert run.error_message is not None and len(run.error_message) == 512
    assert run.error_message.endswith("…")


def _proof_run(
    engine: Engine, operation: str, site: str, error_class: str | None, *, source: str = "www"
) -> None:
    run_id = start_run(
        engine, source=source, site=site, operation=operation, host="h", restic_version="0.14.0"
    )
    status = Status.SUCCESS if error_class is None else Status.FAILED
    finish_run(engine, run_id, RunOutcome(status, error_class=error_class, error_message="why"))


def test_a_site_whose_data_failed_a_drill_or_check_does_not_count(engine: Engine) -> None:
    config = Config.model_validate(
        {
            "sites": {
                name: {"repository": f"/r/{name}", "password_command": "x", "location": LOCATION}
                for name in ("a", "b", "c")
            },
            "sources": {
                name: {
                    "paths": ["/w"],
                    "sites": ["a", "b", "c"],
                    "max_age": "1h",
                    "min_fresh_sites": 2,
                }
                for name in ("www", "db")
            },
        }
    )
    for site in ("a", "b", "c"):
        _run(engine, site, Status.SUCCESS)
        _run(engine, site, Status.SUCCESS, source="db")
    _proof_run(engine, "drill", "a", "DrillFailed")
    _proof_run(engine, "drill", "a", "SiteUnreachable")  # could not run: proves nothing
    _proof_run(engine, "check", "b", "CheckFailed", source="db")  # the whole repository
    now = datetime.now(UTC)

    [www, db] = freshness(config, latest_runs(engine, host="h"), now, Proof.read(engine, "h"))

    assert [s.fresh for s in www.sites] == [True, True, True]
    assert [s.counts for s in www.sites] == [False, False, True]
    assert www.sites[0].damaged == "restore drill failed 0s ago: DrillFailed: why"
    assert www.sites[1].damaged == "restic check failed 0s ago: CheckFailed: why"
    assert www.fresh_sites == 1 and not www.safe
    assert [s.counts for s in db.sites] == [True, False, True] and db.safe

    _proof_run(engine, "drill", "a", None)
    [www, _] = freshness(config, latest_runs(engine, host="h"), now, Proof.read(engine, "h"))
    assert www.sites[0].damaged is None and www.sites[0].last_drill_success_at is not None
    assert www.safe


def test_schema_head_names_the_newest_migration(database_url: str) -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(make_engine(database_url)))
    assert scripts.get_current_head() == SCHEMA_HEAD, "update SCHEMA_HEAD with the migration"


def test_a_site_is_lost_until_a_run_meets_its_repository_again(engine: Engine) -> None:
    from firebreak.history.latest import lost_sites, site_is_lost

    def run(site: str, operation: str, status: Status, error: str | None = None) -> None:
        run_id = start_run(
            engine, source=None, site=site, operation=operation, host="h", restic_version=None
        )
        finish_run(engine, run_id, RunOutcome(status, error_class=error))

    run("a", "backup", Status.SUCCESS)
    run("b", "backup", Status.SUCCESS)
    assert lost_sites(engine, "h") == {} and not site_is_lost(engine, "h", "a")
    run("a", "backup", Status.FAILED, "RepositoryLost")
    run("a", "check", Status.FAILED, "SiteUnreachable")  # says nothing either way
    run("a", "unlock", Status.SUCCESS)  # succeeds whatever repository is there: no verdict
    run("a", "init", Status.SUCCESS)
    assert set(lost_sites(engine, "h")) == {"a"} and site_is_lost(engine, "h", "a")
    assert lost_sites(engine, "another-host") == {}  # each host's own view
    assert not site_is_lost(engine, "h", "b")
    run("a", "reset", Status.SUCCESS)  # an operator's decision clears it
    assert lost_sites(engine, "h") == {} and not site_is_lost(engine, "h", "a")
    run("b", "drill", Status.FAILED, "RepositoryReplaced")
    assert set(lost_sites(engine, "h")) == {"b"}
    run("b", "backup", Status.PARTIAL)  # the repository is back
    assert lost_sites(engine, "h") == {}


def test_a_lock_left_at_a_site_is_known_to_any_process_until_an_unlock_succeeds(
    engine: Engine,
) -> None:
    def ran(operation: str, status: Status, error: str | None = None, host: str = "h") -> None:
        run_id = start_run(
            engine, source=None, site="far", operation=operation, host=host, restic_version="0.14.0"
        )
        finish_run(engine, run_id, RunOutcome(status, exit_code=0, error_class=error))

    assert not left_a_lock(engine, "h", "far")
    ran("backup", Status.FAILED, "Stalled")
    # Neither a restore that read beside the lock, nor a failed unlock, nor another host's
    # success says it is gone.
    ran("restore", Status.SUCCESS)
    ran("unlock", Status.FAILED, "SiteUnreachable")
    ran("backup", Status.SUCCESS, host="other")
    assert left_a_lock(engine, "h", "far")
    assert not left_a_lock(engine, "other", "far")
    assert not left_a_lock(engine, "h", "near")
    ran("unlock", Status.SUCCESS)
    assert not left_a_lock(engine, "h", "far")
    ran("check", Status.FAILED, "RepositoryLocked")
    assert left_a_lock(engine, "h", "far")
