"""/metrics from the run history: a real cycle, a real scrape, promtool's verdict."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from firebreak.cycles.cycle import run_cycle
from tests.support.scrape import get, samples, value
from tests.support.servers import RestServer, free_port
from tests.support.setup import Setup


def test_exporter_serves_what_the_history_says_and_promtool_accepts_it(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    down = rest_server_factory()
    setup.local_site("a")
    setup.local_site("b")
    setup.rest_site("down", down)
    setup.source("www", ["a", "b", "down"], min_fresh_sites=2, max_age="1h")
    rt = setup.runtime()
    down.stop()
    report = run_cycle(rt, "www")
    by_site = {run.site: run for run in report.runs}
    port = free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firebreak",
            "-c",
            str(setup.path),
            "exporter",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, text = get(f"http://127.0.0.1:{port}/metrics")
                break
            except OSError:
                assert time.monotonic() < deadline and exporter.poll() is None, (
                    "the exporter never answered"
                )
                time.sleep(0.2)
        assert status == 200
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        assert get(f"http://127.0.0.1:{port}/readyz") == (200, "ready\n")
        assert get(f"http://127.0.0.1:{port}/nope")[0] == 404
    finally:
        exporter.terminate()
        exporter.wait(10)

    found = samples(text)
    assert value(found, "firebreak_database_up") == 1
    assert value(found, "firebreak_source_safe", source="www") == 1
    assert value(found, "firebreak_source_fresh_sites", source="www") == 2
    assert value(found, "firebreak_source_required_fresh_sites", source="www") == 2
    assert value(found, "firebreak_source_max_age_seconds", source="www") == 3600
    assert value(found, "firebreak_site_fresh", source="www", site="down") == 0
    assert value(found, "firebreak_last_outcome", source="www", site="down", outcome="failed") == 1
    assert value(found, "firebreak_last_outcome", source="www", site="a", outcome="success") == 1
    assert value(found, "firebreak_last_outcome", source="www", site="a", outcome="failed") == 0
    assert value(found, "firebreak_consecutive_failures", source="www", site="down") == 1
    assert value(found, "firebreak_consecutive_failures", source="www", site="a") == 0
    started = by_site["a"].started_at
    assert value(
        found, "firebreak_last_success_timestamp_seconds", source="www", site="a"
    ) == pytest.approx(started.timestamp())
    assert (
        value(found, "firebreak_last_bytes_added", source="www", site="a")
        == by_site["a"].bytes_added
    )
    assert (
        "firebreak_last_success_timestamp_seconds",
        frozenset({("source", "www"), ("site", "down")}),
    ) not in found
    assert (
        value(
            found,
            "firebreak_runs_total",
            source="www",
            site="down",
            operation="backup",
            status="failed",
        )
        == 1
    )
    assert (
        value(
            found,
            "firebreak_runs_total",
            source="www",
            site="a",
            operation="init",
            status="success",
        )
        == 1
    )
    assert value(found, "firebreak_run_duration_seconds_count", operation="backup") == 3
    assert (
        value(
            found, "firebreak_source_worst_case_surviving_sites", source="www", domain="datacenter"
        )
        == 2
    )
    assert any(name == "firebreak_build_info" for name, _ in found)
    for name, labels in found:
        assert name.startswith("firebreak_")
        assert {key for key, _ in labels} <= {
            "source",
            "site",
            "operation",
            "status",
            "outcome",
            "domain",
            "version",
            "restic_version",
            "le",
        }

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make deps installs prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
