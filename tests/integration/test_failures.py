"""Real restic failures, classified: each test makes the fault happen for real."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from firebreak.actions.backup import RetryPlan, back_up_site
from firebreak.actions.cycle import run_cycle
from firebreak.history.records import all_runs
from firebreak.outcomes import Status
from firebreak.restic.version import Features, supports
from tests.support.setup import Setup


def _init_repository(setup: Setup, site: str) -> None:
    rt = setup.runtime()
    assert back_up_site(rt, "www", site).status == Status.SUCCESS


@pytest.mark.restic_matrix
def test_wrong_password_is_permanent_and_named(setup: Setup, tmp_path: Path) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    _init_repository(setup, "a")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    setup.sites["a"]["password_file"] = str(wrong)
    rt = setup.runtime()

    run = back_up_site(rt, "www", "a")

    assert run.status == Status.FAILED
    assert run.error_class == "WrongPassword"
    assert "wrong password" in (run.error_message or "")
    assert run.snapshot_id is None


@pytest.mark.restic_matrix
def test_missing_repository_with_init_never_is_not_created(setup: Setup) -> None:
    setup.local_site("a", init="never")
    setup.source("www", ["a"])
    rt = setup.runtime()

    run = back_up_site(rt, "www", "a")

    assert run.status == Status.FAILED
    assert run.error_class == "RepositoryNotFound"
    assert "init: never" in (run.error_message or "")
    assert not (setup.dir / "repo-a").exists()
    assert [r.operation for r in all_runs(rt.engine)] == ["backup"]


@pytest.mark.restic_matrix
def test_stale_lock_from_a_killed_restic_is_reported_as_locked(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    _init_repository(setup, "a")
    repository = setup.dir / "repo-a"
    _kill_holding_a_lock(setup, repository)
    assert any((repository / "locks").iterdir()), "the killed restic left its lock behind"

    run = back_up_site(setup.runtime(), "www", "a")

    assert run.status == Status.FAILED
    assert run.error_class == "RepositoryLocked"
    assert "locked" in (run.error_message or "")


@pytest.mark.restic_matrix
def test_unreadable_file_makes_a_partial_run_with_a_snapshot(setup: Setup) -> None:
    # Even root cannot read a write-only sysctl: restic skips it and exits 3.
    unreadable = Path("/proc/sys/vm/drop_caches")
    if os.access(unreadable, os.R_OK):
        pytest.skip(f"{unreadable} is readable here")
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"], paths=[str(setup.source_dir), str(unreadable)])
    rt = setup.runtime()

    report = run_cycle(rt, "www")

    assert report.status == Status.PARTIAL
    for run in report.runs:
        assert run.status == Status.PARTIAL
        assert run.exit_code == 3
        assert run.error_class == "PartialBackup"
        assert run.snapshot_id, "a partial run still names its snapshot"
        assert str(unreadable) in (run.error_message or "")


@pytest.mark.restic_matrix
def test_source_with_no_existing_path_is_a_permanent_failure(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"], paths=[str(setup.dir / "gone")])
    _init_repository_for_other_source(setup)
    run = back_up_site(setup.runtime(), "www", "a")
    assert run.status == Status.FAILED
    assert run.error_class == "SourceMissing"


def _init_repository_for_other_source(setup: Setup) -> None:
    setup.source("other", ["a"])
    rt = setup.runtime()
    assert back_up_site(rt, "other", "a").status == Status.SUCCESS


def _kill_holding_a_lock(setup: Setup, repository: Path) -> None:
    """A restic SIGKILLed while it holds an exclusive lock: the lock stays behind."""
    holder = _holding_a_lock(setup, repository)
    holder.send_signal(signal.SIGKILL)
    holder.wait()


def _holding_a_lock(setup: Setup, repository: Path) -> subprocess.Popen[bytes]:
    """A live restic holding an exclusive lock on the repository: `restic key passwd` takes
    it, then waits for the new password on its standard input (closing that ends it, and it
    removes its lock)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(setup.dir),
        "RESTIC_PASSWORD_FILE": str(setup.password_file),
        "RESTIC_REPOSITORY": str(repository),
        "RESTIC_CACHE_DIR": str(setup.dir / "cache"),
    }
    holder = subprocess.Popen(
        ["restic", "key", "passwd"], env=env, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        # Wait for a complete lock file: killed while writing it, restic leaves an unreadable
        # file that later runs ignore (and the test would prove nothing).
        while not any(lock.stat().st_size > 0 for lock in (repository / "locks").iterdir()):
            assert time.monotonic() < deadline, "restic never took its lock"
            time.sleep(0.1)
        time.sleep(0.5)
    except BaseException:
        holder.kill()
        holder.wait()
        raise
    return holder


@pytest.mark.restic_matrix
def test_a_lock_held_by_a_live_restic_is_waited_for_where_restic_can(setup: Setup) -> None:
    setup.local_site("a", lock_wait="40s")
    setup.source("www", ["a"])
    _init_repository(setup, "a")
    rt = setup.runtime()
    holder = _holding_a_lock(setup, setup.dir / "repo-a")
    release = threading.Timer(4.0, lambda: holder.stdin and holder.stdin.close())
    release.start()
    try:
        run = back_up_site(rt, "www", "a")
    finally:
        release.join()
        holder.wait(timeout=20)

    if supports(rt.restic_version, Features.RETRY_LOCK):
        # restic waited for the holder to finish, then backed up.
        assert (run.status, run.error_class) == (Status.SUCCESS, None)
        assert (run.duration_seconds or 0) > 3
    else:
        assert (run.status, run.error_class) == (Status.FAILED, "RepositoryLocked")


@pytest.mark.restic_matrix
def test_a_missing_source_path_is_partial_on_every_restic(setup: Setup) -> None:
    """restic before 0.19 skips it and exits 0: firebreak must not call that a success."""
    setup.local_site("a")
    gone = setup.dir / "gone"
    setup.source("www", ["a"], paths=[str(setup.source_dir), str(gone)])
    rt = setup.runtime()

    run = back_up_site(rt, "www", "a")

    assert run.status == Status.PARTIAL
    assert run.error_class == "PartialBackup"
    assert run.snapshot_id, "the paths that exist are in a snapshot"
    assert run.error_message == (
        f"snapshot written, but source path {gone} does not exist (it is not in the snapshot)"
    )


@pytest.mark.restic_matrix
def test_a_stale_lock_is_unlocked_and_the_retry_succeeds(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    _init_repository(setup, "a")
    _kill_holding_a_lock(setup, setup.dir / "repo-a")
    rt = setup.runtime()

    run = back_up_site(rt, "www", "a", retry=RetryPlan(attempts=2, initial_delay=0.2, max_delay=1))

    assert run.status == Status.SUCCESS
    history = [(r.operation, r.status, r.error_class) for r in all_runs(rt.engine)][2:]
    assert history == [
        ("backup", Status.FAILED, "RepositoryLocked"),
        ("unlock", Status.SUCCESS, None),  # the owner is dead: restic unlock removes it
        ("backup", Status.SUCCESS, None),
    ]


def test_permanent_failures_are_not_retried(setup: Setup, tmp_path: Path) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    _init_repository(setup, "a")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("nope\n")
    wrong.chmod(0o600)
    setup.sites["a"]["password_file"] = str(wrong)
    rt = setup.runtime()
    run = back_up_site(rt, "www", "a", retry=RetryPlan(attempts=3, initial_delay=0.1, max_delay=1))
    assert run.error_class == "WrongPassword"
    # the first backup and its init made the repository; then one try, no retry
    assert [r.operation for r in all_runs(rt.engine)] == ["backup", "init", "backup"]
