"""A REST site across a link of its own (tests/support/netns.py), faulted for real: nftables in
its namespace drops every packet before restic connects or in the middle of a transfer, and tc
tbf slows the link. Each time the other site finishes and succeeds, what the site held before
still restores and passes restic check once the link is back, and status tells the truth."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from firebreak.actions.check import check_site
from firebreak.actions.cycle import run_cycle
from firebreak.actions.runtime import Runtime
from firebreak.history.records import all_runs
from firebreak.outcomes import Operation, Status
from tests.support.cli import firebreak
from tests.support.netns import FarRestServer, far_rest_server_fixture  # noqa: F401
from tests.support.restore import restore_snapshot
from tests.support.setup import Setup

pytestmark = pytest.mark.root


def _first_snapshot(setup: Setup, far: FarRestServer, **site: object) -> tuple[Runtime, str]:
    setup.local_site("a")
    setup.rest_site("far", far, **site)
    setup.source("www", ["a", "far"])
    rt = setup.runtime()
    report = run_cycle(rt, "www")
    assert report.status == Status.SUCCESS, [(r.site, r.error_message) for r in report.runs]
    [snapshot] = [run.snapshot_id for run in report.runs if run.site == "far"]
    assert snapshot
    return rt, snapshot


def _still_holds(setup: Setup, snapshot: str, tmp_path: Path) -> None:
    """What the far site held before the fault restores whole, and restic check passes."""
    target = tmp_path / "restored"
    restore_snapshot(setup.load(), "far", snapshot, target)
    readme = setup.source_dir / "docs" / "readme.txt"
    assert (target / readme.relative_to("/")).read_text() == readme.read_text()


def _far_status(setup: Setup) -> dict[str, object]:
    shown = firebreak(setup.path, "status", "--json")
    [source] = json.loads(shown.stdout)["sources"]
    return next(entry for entry in source["sites"] if entry["site"] == "far")


@pytest.mark.restic_matrix
def test_a_site_blackholed_before_connecting_fails_as_unreachable_in_its_stall_timeout(
    setup: Setup, far_rest_server: FarRestServer, tmp_path: Path
) -> None:
    # Left alone, restic 0.14 waits 30 s for an answer and 0.18 and later try three times.
    rt, kept = _first_snapshot(setup, far_rest_server, stall_timeout="15s")
    far_rest_server.link.blackhole()
    (setup.source_dir / "new.txt").write_text("after the first snapshot\n")

    started = time.monotonic()
    report = run_cycle(rt, "www")
    elapsed = time.monotonic() - started

    by_site = {run.site: run for run in report.runs}
    assert by_site["a"].status == Status.SUCCESS
    far = by_site["far"]
    assert (far.status, far.error_class) == (Status.FAILED, "SiteUnreachable")
    assert far.error_message == "the site did not answer: nothing from restic in 15s (stopped)"
    assert elapsed < 60, f"the cycle took {elapsed:.0f}s"
    seen = _far_status(setup)
    assert seen["last_outcome"] == "failed" and "SiteUnreachable" in str(seen["last_error"])
    assert seen["snapshot_id"] == kept

    far_rest_server.link.heal()
    _still_holds(setup, kept, tmp_path)
    assert check_site(rt, "far").status == Status.SUCCESS


@pytest.mark.restic_matrix
def test_a_site_blackholed_mid_transfer_is_stopped_and_unlocked_before_any_next_check(
    setup: Setup, far_rest_server: FarRestServer, tmp_path: Path
) -> None:
    # restic 0.18 and later spend the grace after SIGINT retrying to delete their lock there.
    setup.top["daemon"] = {"shutdown_grace": "5s"}
    rt, kept = _first_snapshot(setup, far_rest_server, stall_timeout="15s")
    # Random data does not compress or deduplicate: restic has 24 MB to send, at 2 MB/s.
    (setup.source_dir / "big.bin").write_bytes(os.urandom(24_000_000))
    far_rest_server.link.slow("16mbit")
    received = _size(far_rest_server.root)
    cut = threading.Event()

    def cut_the_link_mid_transfer() -> None:
        deadline = time.monotonic() + 60
        while _size(far_rest_server.root) < received + 2_000_000:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        far_rest_server.link.blackhole()
        cut.set()

    cutter = threading.Thread(target=cut_the_link_mid_transfer)
    cutter.start()
    report = run_cycle(rt, "www")
    cutter.join()
    assert cut.is_set(), "the transfer never started"

    by_site = {run.site: run for run in report.runs}
    assert by_site["a"].status == Status.SUCCESS
    far = by_site["far"]
    # restic hangs on the dead connection (0.18 and later retry it): the stall detector ends
    # it, and Stalled says a lock may be left.
    assert (far.status, far.error_class) == (Status.FAILED, "Stalled")
    assert far.duration_seconds is not None and far.duration_seconds < 60
    assert _size(far_rest_server.root / _repo(setup) / "locks") > 0, "no lock left to clean"
    seen = _far_status(setup)
    assert "Stalled" in str(seen["last_error"]) and seen["snapshot_id"] == kept

    # Another process (an operator's check beside the daemon) knows from the history.
    far_rest_server.link.heal()
    checked = firebreak(setup.path, "check", "--site", "far")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    far_runs = [r for r in all_runs(rt.engine) if r.site == "far"]
    assert [(r.operation, r.status) for r in far_runs[-2:]] == [
        (Operation.UNLOCK, Status.SUCCESS),
        (Operation.CHECK, Status.SUCCESS),
    ]
    assert _size(far_rest_server.root / _repo(setup) / "locks") == 0
    _still_holds(setup, kept, tmp_path)


def test_a_slow_link_is_slower_but_never_taken_for_a_stall(
    setup: Setup, far_rest_server: FarRestServer
) -> None:
    # 8 MB at 4 Mbit/s take about 16 s, three times the stall timeout: restic writing into a
    # slow socket is progress.
    _first_snapshot(setup, far_rest_server)
    setup.sites["far"]["stall_timeout"] = "5s"
    rt = setup.runtime()
    far_rest_server.link.slow("4mbit")
    (setup.source_dir / "big.bin").write_bytes(os.urandom(8_000_000))

    report = run_cycle(rt, "www")

    far = next(run for run in report.runs if run.site == "far")
    assert far.status == Status.SUCCESS, far.error_message
    assert far.duration_seconds is not None and far.duration_seconds > 10, "the link was not slow"
    assert check_site(rt, "far").status == Status.SUCCESS


def _repo(setup: Setup) -> str:
    return f"far-{setup.dir.name}"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
