"""The whole chain: a real daemon backs up to real sites, a real Prometheus scrapes it and
evaluates the shipped rules, a real Alertmanager routes them to a webhook. One site's server
stops: the stale and unsafe alerts fire; the page arrives once, for the source."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.support.daemon import DaemonProcess
from tests.support.scrape import get
from tests.support.servers import RestServer, free_port, wait_for_port
from tests.support.setup import Setup

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
        reason="prometheus and prometheus-alertmanager are not installed (make deps installs them)",
    ),
]


class Webhook:
    """An Alertmanager webhook receiver on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, object]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, object]]:
        return [alert for message in self.received for alert in message["alerts"]]  # type: ignore[attr-defined]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _fast_rules(path: Path) -> Path:
    """The shipped rules with their `for:` waits cut to seconds (the expressions are as shipped)."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            # Absent and DaemonDown keep theirs: Prometheus has no scrape yet when it starts.
            if "for" in rule and rule["alert"] not in ("FirebreakAbsent", "FirebreakDaemonDown"):
                rule["for"] = "2s"
    path.write_text(yaml.safe_dump(rules))
    return path


def test_a_stopped_site_pages_once_through_prometheus_and_alertmanager(
    setup: Setup,
    rest_server_factory: Callable[..., RestServer],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    rest = rest_server_factory()
    setup.local_site("local")
    setup.rest_site("rest", rest)
    # This source needs both its sites (the default would be all but one): losing one pages.
    setup.source("www", ["local", "rest"], schedule="every 3s", max_age="12s", min_fresh_sites=2)
    setup.top["retry"] = {"attempts": 0}
    daemon = DaemonProcess(setup.write(), setup.dir)
    try:
        daemon.ready()
        metrics = setup.top["metrics"]["listen"]
        webhook = Webhook()
        am_port, prom_port = free_port(), free_port()

        am_config = yaml.safe_load(
            (ROOT / "deploy" / "alertmanager" / "alertmanager.example.yml").read_text()
        )
        am_config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
        for receiver in am_config["receivers"]:
            receiver["webhook_configs"] = [
                {"url": f"http://127.0.0.1:{webhook.port}/{receiver['name']}"}
            ]
        (setup.dir / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        processes.append(
            subprocess.Popen(
                [
                    "prometheus-alertmanager",
                    f"--config.file={setup.dir / 'alertmanager.yml'}",
                    f"--storage.path={setup.dir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(setup.dir / "alertmanager.log").open("wb"),
            )
        )
        prometheus_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(_fast_rules(setup.dir / "rules.yml"))],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
            },
            "scrape_configs": [
                {"job_name": "firebreak", "static_configs": [{"targets": [metrics]}]}
            ],
        }
        (setup.dir / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
        processes.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={setup.dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={setup.dir / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--rules.alert.resend-delay=1s",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(setup.dir / "prometheus.log").open("wb"),
            )
        )
        wait_for_port(am_port, 30, name="alertmanager")
        wait_for_port(prom_port, 30, name="prometheus")

        def firing() -> set[str]:
            try:
                status, body = get(f"http://127.0.0.1:{prom_port}/api/v1/alerts")
            except OSError:
                return set()
            alerts = json.loads(body)["data"]["alerts"] if status == 200 else []
            return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

        daemon.wait_for(
            "both sites fresh",
            lambda: (
                get(f"http://{metrics}/metrics")[1].count("firebreak_site_fresh{") == 2
                and 'firebreak_source_safe{source="www"} 1.0' in get(f"http://{metrics}/metrics")[1]
            ),
        )
        time.sleep(4)
        assert "FirebreakSourceUnsafe" not in firing() and "FirebreakSiteStale" not in firing()

        rest.stop()
        daemon.wait_for(
            "the stale and unsafe alerts",
            lambda: {"FirebreakSourceUnsafe", "FirebreakSiteStale"} <= firing(),
            timeout=90,
        )
        daemon.wait_for("the page to arrive", lambda: bool(webhook.alerts()), timeout=60)
        time.sleep(3)  # let anything else that would be sent arrive
        delivered = [alert for alert in webhook.alerts() if alert["status"] == "firing"]
        names = {alert["labels"]["alertname"] for alert in delivered}  # type: ignore[index]
        assert "FirebreakSourceUnsafe" in names
        # Stale fires with Unsafe and is inhibited by it: one page for the source, not one per
        # site. (SiteFailing fires earlier, after 3 failures, and PlacementDegraded is true of
        # a two-site source that needs both: those arrive as warnings, as they should.)
        assert "FirebreakSiteStale" not in names
        assert names <= {
            "FirebreakSourceUnsafe",
            "FirebreakSiteFailing",
            "FirebreakPlacementDegraded",
        }
        page = next(a for a in delivered if a["labels"]["alertname"] == "FirebreakSourceUnsafe")  # type: ignore[index]
        assert page["labels"]["source"] == "www" and page["labels"]["severity"] == "critical"  # type: ignore[index]
        # The runbook link works: the daemon that raised the alert serves the entry.
        runbook = page["annotations"]["runbook_url"]  # type: ignore[index]
        assert runbook == f"http://{page['labels']['instance']}/runbook#firebreaksourceunsafe"  # type: ignore[index]
        status, html = get(runbook.partition("#")[0])
        assert status == 200 and 'id="firebreaksourceunsafe"' in html
        assert any(message["receiver"] == "backup-oncall" for message in webhook.received)
    finally:
        daemon.stop()
