"""The shipped alert rules, their unit tests and the Alertmanager example, checked by the
tools Prometheus ships."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make deps installs it)")
    return path


def test_rules_are_valid() -> None:
    done = subprocess.run(
        [_tool("promtool"), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tests = RULES.parent / "alerts_test.yml"
    done = subprocess.run(
        [_tool("promtool"), "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    tested = set(re.findall(r"alertname: (\w+)", tests.read_text()))
    assert alerts == tested, f"alerts without a test: {alerts - tested}"


def test_every_alert_has_a_severity_and_a_runbook_entry() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {f"#{heading.lower()}" for heading in re.findall(r"^## (\w+)", runbook, re.MULTILINE)}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            url = rule["annotations"]["runbook_url"]
            if rule["alert"] == "FirebreakAbsent":  # no firebreak answers: Prometheus' targets
                assert url == "{{ $externalURL }}/targets"
                continue
            # Served by the firebreak that raised the alert (metrics/page.py).
            prefix = "http://{{ $labels.instance }}/runbook"
            assert url.startswith(prefix) and url[len(prefix) :] in anchors, url


def test_alertmanager_example_is_valid() -> None:
    config = ROOT / "deploy" / "alertmanager" / "alertmanager.example.yml"
    done = subprocess.run(
        [_tool("amtool"), "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 inhibit rules" in done.stdout


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "firebreak.json").read_text())
    names = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "source", "site"} <= names
    assert "__inputs" not in dashboard, "an import prompt for a data source nothing uses"
    # The status page and the runbook, one click away, served by the firebreak picked.
    links = {link["title"]: link["url"] for link in dashboard["links"]}
    assert links == {"Status page": "http://${instance}/", "Runbook": "http://${instance}/runbook"}
    rules = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        # Every panel says what its numbers are: a unit, or words for 0 and 1.
        defaults = panel["fieldConfig"]["defaults"]
        assert "unit" in defaults or "mappings" in defaults, panel["title"]
        for number, target in enumerate(panel["targets"]):
            expr = target["expr"].replace("$source", ".*").replace("$site", ".*")
            rules.append({"record": f"dashboard:panel{panel['id']}_{number}", "expr": expr})
    for number, annotation in enumerate(dashboard["annotations"]["list"]):
        expr = annotation["expr"].replace("$source", ".*").replace("$site", ".*")
        rules.append({"record": f"dashboard:annotation{number}", "expr": expr})
    assert len(rules) >= 10
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [_tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    titles = " ".join(panel["title"] for panel in dashboard["panels"])
    for topic in (
        "Freshness grid",
        "Time since the last successful backup",
        "Safe sources",
        "Damaged sites",
        "restore drill",
        "failures",
        "duration",
        "Bytes added",
        "restic check",
        "Daemon and run history",
        "Spare fresh sites",
    ):
        assert topic.lower() in titles.lower(), topic
