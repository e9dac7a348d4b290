"""`make bench --small` inside `make test`, so that the bench cannot rot: it must run to the end
and judge every target. Its times are not looked at: a test never fails on a time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every target of docs/performance.md that a --small run measures.
JUDGED = (
    "firebreak --version",
    "firebreak --help",
    "firebreak status (10 000 runs)",
    "local sites, first backup: × a serial loop",
    "local sites, incremental backup: × a serial loop",
    "local sites, unchanged backup: × a serial loop",
    "firebreak backup: time added to its restic runs",
    "firebreak restore: first byte written",
    "daemon CPU over a first cycle, % of restic's",
    "idle daemon: resident size",
    "idle daemon: CPU, % of one core",
    "a scrape's p99 (10000 runs)",
    "status's reads, p99 (10000 runs)",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_small_bench_runs_every_scenario_and_judges_every_target(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCH_")}
    env.update(BENCH_REPEAT="1", BENCH_DIR=str(tmp_path / "bench"))
    # A group of its own: if it has to be stopped, its daemon and restic go with it.
    bench = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.bench", "--small"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        stdout, stderr = bench.communicate()
        pytest.fail(f"the small bench took over 840 s:\n{stdout}\n{stderr}")
    done = subprocess.CompletedProcess(bench.args, bench.returncode, stdout, stderr)

    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.partition("\ntargets (docs/performance.md):\n")[2]
    for target in JUDGED:
        assert re.search(rf"^  (PASS|FAIL)  {re.escape(target)} ", summary, re.M), target
    assert re.search(r"^  SKIP  REST sites, slow links: .* \(not with --small\)$", summary, re.M)
    counted = re.search(r"^(\d+) met, (\d+) missed, 1 not measured$", summary, re.M)
    assert counted is not None, summary
    assert int(counted[1]) + int(counted[2]) == len(JUDGED)
    # Each tool's median, for each kind of backup, made it into the table.
    for scenario in ("first", "incremental", "unchanged"):
        assert re.search(rf"^  {scenario} +(\d+\.\d\ds +){{4}}\d+\.\d\d$", done.stdout, re.M)
