"""Restore for an incident: the freshest site that answers, the next one when it fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from firebreak.actions.cycle import run_cycle
from firebreak.actions.head_start import HeadStart, staging_for
from firebreak.actions.restore import RestoreProgress, restore_source
from firebreak.history.records import all_runs
from firebreak.outcomes import Status
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from tests.support.cli import firebreak, on_a_terminal
from tests.support.restore import assert_same_tree
from tests.support.servers import RestServer
from tests.support.setup import Setup


@pytest.mark.restic_matrix
def test_restore_falls_back_when_the_freshest_site_is_down(
    setup: Setup, rest_server_factory: Callable[..., RestServer], tmp_path: Path
) -> None:
    rest = rest_server_factory()
    setup.local_site("local")
    setup.rest_site("rest", rest)
    setup.source("www", ["local", "rest"])
    rt = setup.runtime()
    assert run_cycle(rt, "www", sites=["local"]).status == Status.SUCCESS
    assert run_cycle(rt, "www", sites=["rest"]).status == Status.SUCCESS  # rest is now freshest
    rest.stop()

    target = tmp_path / "restored"
    done = firebreak(setup.path, "restore", "www", "--target", str(target))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "rest: SiteUnreachable" in done.stderr
    assert done.stdout.startswith("restored www from site local: snapshot ")
    assert "verified" in done.stdout
    assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))
    restores = [(r.site, r.status) for r in all_runs(rt.engine) if r.operation == "restore"]
    assert restores == [("rest", "failed"), ("local", "success")]


def test_a_site_lost_mid_restore_leaves_nothing_behind_and_the_next_site_finishes(
    setup: Setup, rest_server_factory: Callable[..., RestServer], tmp_path: Path
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(3_000_000))
    rest = rest_server_factory()
    setup.local_site("local")
    # Downloads at 200 KiB/s take ~15 s. restic 0.14 prints nothing while it restores, so
    # what keeps the attempt alive is the data it writes; once the server is gone (restic
    # itself would retry for minutes) nothing moves and the 3 s stall_timeout ends it.
    setup.rest_site("rest", rest, limit_download=200)
    setup.source("www", ["local", "rest"])
    rt = setup.runtime()
    assert run_cycle(rt, "www", sites=["local"]).status == Status.SUCCESS
    assert run_cycle(rt, "www", sites=["rest"]).status == Status.SUCCESS
    # Only now the short stall timeout: restic init derives its key for a while without a
    # byte of I/O, which a loaded machine can stretch past 3 s.
    setup.sites["rest"]["stall_timeout"] = "3s"
    rt = setup.runtime()
    target = tmp_path / "restored"
    staging = tmp_path / ".restored.firebreak-rest"

    def pull_the_plug() -> None:
        deadline = time.monotonic() + 20
        while not (staging.exists() and any(staging.rglob("*"))) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        rest.stop()

    plug = threading.Thread(target=pull_the_plug)
    plug.start()
    report = restore_source(rt, "www", target)
    plug.join()

    assert [a.site for a in report.attempts] == ["rest", "local"]
    # Stopped for stalling; or, when restic's last words were retries of the dead server,
    # named for what they said.
    assert report.attempts[0].error is not None
    assert report.attempts[0].error.startswith(("Stalled", "SiteUnreachable"))
    assert report.restored is not None and report.restored.site == "local"
    assert not staging.exists(), "the failed attempt left its files"
    assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))


@pytest.mark.restic_matrix
def test_restore_reports_its_progress_against_the_size_of_the_snapshot(
    setup: Setup, rest_server_factory: Callable[..., RestServer], tmp_path: Path
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(1_500_000))
    rest = rest_server_factory()
    setup.rest_site("rest", rest, limit_download=500)
    setup.source("www", ["rest"])
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    size = sum(
        p.stat().st_size for p in setup.source_dir.rglob("*") if p.is_file() and not p.is_symlink()
    )
    seen: list[RestoreProgress] = []

    report = restore_source(rt, "www", tmp_path / "restored", progress=seen.append)

    assert report.restored is not None
    # The size comes from a listing made beside the restore: unknown at first.
    assert {p.site for p in seen} == {"rest"} and {p.total for p in seen} <= {None, size}
    assert seen[0].written == 0 and seen[0].total is None
    assert any(0 < p.written < size for p in seen), "no sample while the bytes came in"
    assert [p.written for p in seen] == sorted(p.written for p in seen)
    assert seen[-1].written >= size and seen[-1].verifying


def test_restore_on_a_terminal_draws_a_progress_bar(
    setup: Setup, rest_server_factory: Callable[..., RestServer], tmp_path: Path
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(1_000_000))
    rest = rest_server_factory()
    setup.rest_site("rest", rest, limit_download=500)
    setup.source("www", ["rest"])
    assert run_cycle(setup.runtime(), "www").status == Status.SUCCESS
    target = tmp_path / "restored"
    done = on_a_terminal(setup.path, "restore", "www", "--target", str(target), timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "restoring www from rest (" in done.stdout
    assert re.search(r"\d\.\d/1\.\d MiB", done.stdout), "no bar against the snapshot's size"
    assert "verifying www from rest" in done.stdout
    assert "restored www from site rest: snapshot " in done.stdout


def test_restore_refuses_a_non_empty_target_without_force(setup: Setup, tmp_path: Path) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    run_cycle(setup.runtime(), "www")
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    refused = firebreak(setup.path, "restore", "www", "--target", str(target))
    assert refused.returncode == 2 and "is not empty" in refused.stderr
    forced = firebreak(setup.path, "restore", "www", "--target", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (target / "keep.txt").read_text() == "mine"
    assert (target / setup.source_dir.relative_to("/") / "docs" / "readme.txt").exists()
    lone = firebreak(
        setup.path, "restore", "www", "--target", str(tmp_path / "x"), "--snapshot", "abcd"
    )
    assert lone.returncode == 2 and "--site" in lone.stderr


@pytest.mark.restic_matrix
def test_restore_opens_the_site_once_for_the_snapshot_the_history_recorded(
    setup: Setup, tmp_path: Path
) -> None:
    newest = _two_snapshots(setup)

    target = tmp_path / "restored"
    done = firebreak(setup.path, "-vv", "restore", "www", "--target", str(target))

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"restored www from site a: snapshot {newest[:8]} ")
    # The restore went straight to the snapshot: no listing of the site before it.
    assert not re.search(r"started \S*restic snapshots", done.stderr)
    assert re.search(r"started \S*restic restore", done.stderr)
    assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))


@pytest.mark.restic_matrix
def test_restore_finds_the_newest_the_site_holds_when_the_recorded_one_was_forgotten_by_hand(
    setup: Setup, tmp_path: Path
) -> None:
    older = {path: path.read_bytes() for path in setup.source_dir.rglob("*") if path.is_file()}
    newest = _two_snapshots(setup)
    done = firebreak(setup.path, "restic", "a", "forget", newest)
    assert done.returncode == 0, done.stdout + done.stderr

    target = tmp_path / "restored"
    done = firebreak(setup.path, "restore", "www", "--target", str(target))

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"snapshot {newest[:8]}, the newest recorded here, is not at the site" in done.stderr
    assert done.stdout.startswith("restored www from site a: snapshot ")
    assert newest[:8] not in done.stdout
    restored = target / setup.source_dir.relative_to("/")
    for path, content in older.items():
        assert (restored / path.relative_to(setup.source_dir)).read_bytes() == content
    assert not list(tmp_path.glob(".restored.firebreak-*"))
    runs = [r for r in setup.runs() if r.operation == "restore"]
    assert [(r.site, r.status) for r in runs] == [("a", "success")]


def test_a_restic_started_ahead_for_another_snapshot_is_stopped_and_none_of_it_restored(
    setup: Setup, tmp_path: Path
) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    rt = setup.runtime()
    (setup.source_dir / "gone-since.txt").write_text("only in the older snapshot\n")
    older = run_cycle(rt, "www").runs[0].snapshot_id
    (setup.source_dir / "gone-since.txt").unlink()
    newest = run_cycle(rt, "www").runs[0].snapshot_id
    assert older is not None and newest is not None
    target = tmp_path / "restored"
    staging = staging_for(target, "a")
    staging.mkdir()
    at = rt.restic_at(resolve_site("a", rt.config.sites["a"]))
    ahead = commands.restore(at, snapshot=older[:8], target=staging, verify=True)
    head = HeadStart("a", ahead, runner.start(ahead), staging)

    report = restore_source(rt, "www", target, head=head)

    assert report.restored is not None and report.restored.snapshot is not None
    assert report.restored.snapshot.id == newest[:8]
    assert head.process.returncode is not None  # stopped (or done) and reaped
    restored = target / setup.source_dir.relative_to("/")
    assert_same_tree(setup.source_dir, restored)
    assert not (restored / "gone-since.txt").exists()


def _two_snapshots(setup: Setup) -> str:
    """Two cycles of www to a local site a, the second after a change; its snapshot id."""
    setup.local_site("a")
    setup.source("www", ["a"])
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    (setup.source_dir / "docs" / "readme.txt").write_text("the newer one\n")
    newest = run_cycle(rt, "www").runs[0].snapshot_id
    assert newest is not None
    return newest


def test_a_second_restore_into_the_same_target_is_refused_and_the_first_finishes(
    setup: Setup, tmp_path: Path
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(3_000_000))
    setup.local_site("a", limit_download=300)  # a restore of about 10 s
    setup.source("www", ["a"])
    assert run_cycle(setup.runtime(), "www").status == Status.SUCCESS
    target = tmp_path / "restored"
    restore = [sys.executable, "-m", "firebreak", "-c", str(setup.path), "restore", "www"]
    first = subprocess.Popen(
        [*restore, "--target", str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    staging = tmp_path / ".restored.firebreak-a"
    deadline = time.monotonic() + 60
    while not (staging.exists() and any(staging.rglob("*"))):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)

    (tmp_path / "elsewhere").mkdir()
    spelled = tmp_path / "elsewhere" / ".." / "restored"  # the same target, spelled otherwise
    second = firebreak(setup.path, "restore", "www", "--target", str(spelled))

    assert second.returncode == 2, second.stderr
    assert f"another firebreak restore into {target} is under way" in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))
    assert [r.status for r in setup.runs() if r.operation == "restore"] == [Status.SUCCESS]
