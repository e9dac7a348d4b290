"""The shipped alert rules against what a real setup exports: a healthy setup with the
defaults raises nothing, and one stale site raises exactly the alert it should.

A real config (defaults, three sites on three filesystems in three datacenters), real restic,
a real scrape of ``firebreak exporter``; the scrape becomes ``promtool test rules`` input, its
timestamps moved so that the scrape happens at promtool's time 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import firebreak
from tests.support.mounts import tmpfs
from tests.support.scrape import get, running_exporter
from tests.support.setup import Setup

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
MINUTES = 60  # how long promtool watches the scraped values

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="three filesystems for three sites need root"),
    pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed"),
]


def _series(scrape: str, scraped_at: float) -> list[dict[str, str]]:
    """Each sample as a promtool input series, its value held for MINUTES."""
    found = []
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            number = sample.value
            if sample.name.endswith("_timestamp_seconds"):
                number -= scraped_at  # the scrape is at time 0 for promtool
            labels = {**sample.labels, "job": "firebreak", "instance": "h1"}
            shown = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
            found.append({"series": f"{sample.name}{{{shown}}}", "values": f"{number}x{MINUTES}"})
    found.append({"series": 'up{job="firebreak",instance="h1"}', "values": f"1x{MINUTES}"})
    return found


def _alert_names() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"]]


def _promtool(tmp_path: Path, scrape: str, scraped_at: float, expected: dict[str, Any]) -> None:
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _series(scrape, scraped_at),
                "alert_rule_test": [
                    {"eval_time": f"{MINUTES}m", "alertname": name, "exp_alerts": alerts}
                    for name in _alert_names()
                    for alerts in [expected.get(name, [])]
                ],
            }
        ],
    }
    path = tmp_path / "scrape_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _scrape(setup: Setup) -> tuple[str, float]:
    import time

    with running_exporter(setup.path) as base:
        at = time.time()
        status, text = get(f"{base}/metrics")
    assert status == 200
    return text, at


def _healthy_default_setup(setup: Setup, disks: list[Path]) -> None:
    del setup.top["placement"]  # the defaults, enforce: error included
    for name, disk in zip(("a", "b", "c"), disks, strict=True):
        setup.site(name, str(disk / "restic"))  # three datacenters, three filesystems
    setup.source("www", ["a", "b", "c"])
    done = firebreak(setup.write(), "validate", "--offline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stdout, done.stdout


def test_a_healthy_default_setup_raises_no_alarm_and_one_stale_site_one(
    setup: Setup, tmp_path: Path
) -> None:
    with (
        tmpfs(tmp_path / "disk-a") as disk_a,
        tmpfs(tmp_path / "disk-b") as disk_b,
        tmpfs(tmp_path / "disk-c") as disk_c,
    ):
        _healthy_default_setup(setup, [disk_a, disk_b, disk_c])
        placement = firebreak(setup.path, "placement", "--offline")
        assert placement.returncode == 0
        assert "BROKEN" not in placement.stdout
        assert "www: placement holds: it survives losing any one datacenter" in placement.stdout

        # One site has never had a backup: stale, and only that.
        assert firebreak(setup.path, "backup", "www", "--site", "a", "--site", "b").returncode == 0
        scrape, at = _scrape(setup)
        status = firebreak(setup.path, "status")
        assert status.returncode == 0, "two fresh sites of three keep the source safe"
        _promtool(
            tmp_path,
            scrape,
            at,
            {
                "FirebreakSiteStale": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "firebreak",
                            "instance": "h1",
                            "source": "www",
                            "site": "c",
                        },
                        "exp_annotations": {
                            "summary": "Site c is stale for source www",
                            "description": "The newest successful backup of www at c is older "
                            "than the source's max_age (or there is none).",
                            "runbook_url": "http://h1/runbook#firebreaksitestale",
                        },
                    }
                ]
            },
        )

        # Every site backed up: nothing at all.
        assert firebreak(setup.path, "backup", "www").returncode == 0
        scrape, at = _scrape(setup)
        _promtool(tmp_path, scrape, at, {})
