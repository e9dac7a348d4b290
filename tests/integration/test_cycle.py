"""One cycle of one source to four sites of four kinds, then a restore from each."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from firebreak.actions.cycle import run_cycle
from firebreak.clock import utcnow
from firebreak.history.freshness import freshness
from firebreak.history.latest import latest_runs
from firebreak.history.records import all_runs
from firebreak.outcomes import Status
from tests.support.restore import assert_same_tree, restore_snapshot
from tests.support.servers import RestServer, S3Server, SftpServer, silent_server
from tests.support.setup import Setup


@pytest.mark.restic_matrix
def test_one_cycle_to_local_rest_sftp_and_s3_then_restore_each(
    setup: Setup,
    rest_server: RestServer,
    sftp_server: SftpServer,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    setup.local_site("local")
    setup.rest_site("rest", rest_server)
    setup.sftp_site("sftp", sftp_server)
    setup.s3_site("s3", s3_server)
    setup.source("www", ["local", "rest", "sftp", "s3"])
    setup.top["max_parallel_runs"] = 4
    rt = setup.runtime()

    report = run_cycle(rt, "www")

    assert report.status == Status.SUCCESS, [(r.site, r.error_message) for r in report.runs]
    assert sorted(run.site for run in report.runs) == ["local", "rest", "s3", "sftp"]
    for run in report.runs:
        assert run.snapshot_id, run.site
        assert run.repository_initialized, "init: auto creates a missing repository"
        assert run.bytes_added and run.bytes_added > 300_000
        assert run.files_new == 4
    # init was recorded as its own run at every site
    operations = sorted((run.site, run.operation) for run in all_runs(rt.engine))
    assert operations.count(("rest", "init")) == 1
    assert len(operations) == 8

    report_by_site = {run.site: run for run in report.runs}
    for site in ("local", "rest", "sftp", "s3"):
        target = tmp_path / f"restored-{site}"
        restore_snapshot(rt.config, site, report_by_site[site].snapshot_id or "", target)
        assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))

    status = freshness(rt.config, latest_runs(rt.engine, host=rt.host), utcnow())
    assert status[0].safe and status[0].fresh_sites == 4


def test_second_cycle_adds_almost_nothing_and_uses_existing_repositories(setup: Setup) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.local_site("c")
    setup.source("www", ["a", "b", "c"])
    rt = setup.runtime()
    first = run_cycle(rt, "www")
    second = run_cycle(rt, "www")
    assert first.status == second.status == Status.SUCCESS
    for run in second.runs:
        assert not run.repository_initialized
        assert run.files_new == 0 and run.files_unmodified == 4
        assert (run.bytes_added or 0) < 10_000


@pytest.mark.restic_matrix
def test_a_stopped_site_neither_stops_nor_delays_the_others(
    setup: Setup, rest_server_factory: object
) -> None:
    make = rest_server_factory
    assert callable(make)
    down: RestServer = make()
    setup.local_site("a")
    setup.local_site("b")
    # restic 0.14 gives up on a refused connection at once; 0.18 and later would retry it
    # for 15 minutes: firebreak stops them after a few tries.
    setup.rest_site("down", down)
    setup.source("www", ["a", "down", "b"])
    setup.top["max_parallel_runs"] = 3
    rt = setup.runtime()
    baseline = run_cycle(rt, "www", sites=["a"])
    assert baseline.status == Status.SUCCESS
    down.stop()

    started = time.monotonic()
    report = run_cycle(rt, "www")
    elapsed = time.monotonic() - started

    by_site = {run.site: run for run in report.runs}
    assert report.status == Status.FAILED
    assert by_site["a"].status == by_site["b"].status == Status.SUCCESS
    assert by_site["down"].status == Status.FAILED
    assert by_site["down"].error_class == "SiteUnreachable"
    assert "connection refused" in (by_site["down"].error_message or "")
    assert [run.site for run in report.failed] == ["down"]
    # The healthy sites took as long as they take alone; the dead one added nothing.
    assert elapsed < 60


@pytest.mark.restic_matrix
def test_a_hung_site_is_stopped_for_stalling_while_the_others_finish_on_time(setup: Setup) -> None:
    # A server that accepts connections and never answers: restic waits forever on it.
    with silent_server() as port:
        setup.local_site("a")
        setup.local_site("b")
        setup.site("hung", f"rest:http://127.0.0.1:{port}/repo", stall_timeout="4s")
        setup.source("www", ["a", "hung", "b"])
        setup.top["max_parallel_runs"] = 3
        rt = setup.runtime()

        report = run_cycle(rt, "www")

    by_site = {run.site: run for run in report.runs}
    hung = by_site["hung"]
    assert hung.status == Status.FAILED
    # restic said nothing at all: the site never answered, not even to open the repository.
    assert (hung.error_class, hung.error_message) == (
        "SiteUnreachable",
        "the site did not answer: nothing from restic in 4s (stopped)",
    )
    assert hung.duration_seconds is not None and 4 <= hung.duration_seconds < 30
    for name in ("a", "b"):
        healthy = by_site[name]
        assert healthy.status == Status.SUCCESS
        assert healthy.started_at is not None and hung.finished_at is not None
        # It ran beside the hung one, not after it (on a loaded machine it may finish later).
        assert healthy.started_at < hung.finished_at, "a healthy site waited for the hung one"
