"""``make bench`` (idle part): what the daemon costs while nothing is due.

10 sources × 3 local sites, each backed up once by ``firebreak backup --all`` so that
catch-up finds nothing to do; then ``firebreak run``, and once it is ready and has settled
(BENCH_IDLE_SETTLE seconds, default 10), its CPU time and resident size over
BENCH_IDLE_SECONDS (default 60), read from /proc; then the CPU a scrape of /metrics costs
(the mean of 20), which Prometheus adds at its interval. Targets (issue 17, docs/performance.md): at most 80 MB
resident and 0.2 % of one CPU. Nothing here asserts them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.benchmarks.measure import cpu_seconds
from tests.benchmarks.verdicts import judge
from tests.support.daemon import DaemonProcess
from tests.support.setup import Setup

SOURCES = 10
SCRAPES = 20
RSS_TARGET_MB = 80
CPU_TARGET_PERCENT = 0.2


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(small: bool = False) -> None:
    settle = float(os.environ.get("BENCH_IDLE_SETTLE", "2" if small else "10"))
    seconds = float(os.environ.get("BENCH_IDLE_SECONDS", "10" if small else "60"))
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-idle-") as work:
        setup = Setup(Path(work))
        for site in ("a", "b", "c"):
            setup.local_site(site)
        for index in range(SOURCES):
            setup.source(f"src{index}", ["a", "b", "c"], paths=[str(setup.source_dir)])
        config = setup.write()
        subprocess.run(
            [sys.executable, "-m", "firebreak", "-c", str(config), "backup", "--all"],
            check=True,
            capture_output=True,
        )
        daemon = DaemonProcess(config, Path(work), watchdog_usec=None)
        try:
            daemon.ready()
            time.sleep(settle)
            began, cpu_before = time.monotonic(), cpu_seconds(daemon.pid)[0]
            rss = _rss_mb(daemon.pid)
            while time.monotonic() - began < seconds:
                time.sleep(1)
                rss = max(rss, _rss_mb(daemon.pid))
            cpu = cpu_seconds(daemon.pid)[0] - cpu_before
            elapsed = time.monotonic() - began
            # What Prometheus adds: a scrape's CPU, from the mean of a few.
            metrics = f"http://{setup.top['metrics']['listen']}/metrics"
            cpu_before = cpu_seconds(daemon.pid)[0]
            for _ in range(SCRAPES):
                with urllib.request.urlopen(metrics, timeout=10) as answer:  # loopback only
                    answer.read()
            scrape_ms = 1000 * (cpu_seconds(daemon.pid)[0] - cpu_before) / SCRAPES
            rss = max(rss, _rss_mb(daemon.pid))
        finally:
            daemon.stop()
    percent = 100 * cpu / elapsed
    print(f"\nidle daemon, {SOURCES} sources × 3 sites, over {elapsed:.0f} s:")
    print(
        f"  a scrape of /metrics: {scrape_ms:.0f} ms of CPU (every 15 s: {scrape_ms / 150:.2f} %)"
    )
    judge("idle daemon: resident size", rss, RSS_TARGET_MB, " MB", digits=1)
    judge("idle daemon: CPU, % of one core", percent, CPU_TARGET_PERCENT, " %")


if __name__ == "__main__":
    main()
