"""How many restic runs at once: by default a cycle runs at every site of its source at once
(the slowest site sets its time), and runs at local sites, which cost this host's CPU and
disk rather than a network link, are bounded by its cores (max_parallel_local_runs)."""

from __future__ import annotations

import itertools
import os

from firebreak.actions.cycle import run_cycle
from firebreak.history.models import Run
from firebreak.outcomes import Status
from tests.support.servers import RestServer
from tests.support.setup import Setup

# restic's own upload limit (KiB/s): about 3 s for the 1 MB below, whatever the machine.
SLOW = 300


def _overlap(runs: list[Run]) -> bool:
    """Every run was going at one moment."""
    ends = [run.finished_at for run in runs]
    assert all(end is not None for end in ends)
    return max(run.started_at for run in runs) < min(end for end in ends if end is not None)


def _one_at_a_time(runs: list[Run]) -> bool:
    ordered = sorted(runs, key=lambda run: run.started_at)
    return all(
        later.started_at >= earlier.finished_at
        for earlier, later in itertools.pairwise(ordered)
        if earlier.finished_at is not None
    )


def test_by_default_a_cycle_runs_at_every_site_at_once(
    setup: Setup, rest_server: RestServer
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(1_000_000))
    for name in ("a", "b", "c"):
        setup.rest_site(name, rest_server, limit_upload=SLOW)
    setup.source("www", ["a", "b", "c"])
    assert "max_parallel_runs" not in setup.top
    rt = setup.runtime()
    assert rt.config.run_limit == 3

    report = run_cycle(rt, "www")

    assert report.status == Status.SUCCESS, [(r.site, r.error_message) for r in report.runs]
    assert _overlap(report.runs), [(r.site, r.started_at, r.finished_at) for r in report.runs]


def test_local_sites_take_turns_beyond_max_parallel_local_runs_while_a_remote_one_goes_on(
    setup: Setup, rest_server: RestServer
) -> None:
    (setup.source_dir / "big.bin").write_bytes(os.urandom(1_000_000))
    for name in ("disk1", "disk2"):
        setup.local_site(name, limit_upload=SLOW)
    setup.rest_site("far", rest_server, limit_upload=SLOW // 3)
    setup.source("www", ["disk1", "disk2", "far"])
    setup.top["max_parallel_local_runs"] = 1
    rt = setup.runtime()

    report = run_cycle(rt, "www")

    assert report.status == Status.SUCCESS, [(r.site, r.error_message) for r in report.runs]
    by_site = {run.site: run for run in report.runs}
    local = [by_site["disk1"], by_site["disk2"]]
    assert _one_at_a_time(local), [(r.site, r.started_at, r.finished_at) for r in local]
    # The remote site ran beside both of them.
    assert _overlap([by_site["far"], local[0]]) and _overlap([by_site["far"], local[1]])
