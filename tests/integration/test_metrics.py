"""/metrics from the run history: a real cycle, a real scrape, promtool's verdict."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from firebreak.actions.cycle import run_cycle
from tests.support.cli import firebreak
from tests.support.scrape import get, running_exporter, samples, value
from tests.support.servers import RestServer, free_port
from tests.support.setup import Setup


def test_exporter_serves_what_the_history_says_and_promtool_accepts_it(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    down = rest_server_factory()
    setup.local_site("a")
    setup.local_site("b", drill_schedule=None)  # no drills here: none can be overdue
    setup.rest_site("down", down)
    setup.source("www", ["a", "b", "down"], min_fresh_sites=2, max_age="1h")
    rt = setup.runtime()
    down.stop()
    report = run_cycle(rt, "www")
    by_site = {run.site: run for run in report.runs}
    with running_exporter(setup.path) as base:
        status, text = get(f"{base}/metrics")
        assert status == 200
        assert get(f"{base}/healthz")[0] == 200
        assert get(f"{base}/readyz") == (200, "ready\n")
        assert get(f"{base}/nope")[0] == 404
        status, page = get(f"{base}/")
        assert status == 200 and "NOT SAFE" not in page and 'id="site-down"' in page

    found = samples(text)
    assert value(found, "firebreak_database_up") == 1
    # The default schedules: checks weekly, drills daily; none where drills are off.
    assert value(found, "firebreak_check_interval_seconds", site="a") == 7 * 86400
    assert value(found, "firebreak_drill_interval_seconds", site="a") == 86400
    assert ("firebreak_drill_interval_seconds", frozenset({("site", "b")})) not in found
    first = "firebreak_first_success_timestamp_seconds"
    assert value(found, first, source="www", site="a") == pytest.approx(
        by_site["a"].started_at.timestamp()
    )
    assert (first, frozenset({("source", "www"), ("site", "b")})) not in found
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
    assert value(found, "process_resident_memory_bytes") > 0  # live process metrics
    for name, labels in found:
        if name.startswith("process_"):
            continue
        assert name.startswith("firebreak_")
        assert {key for key, _ in labels} <= {
            "source",
            "site",
            "operation",
            "status",
            "outcome",
            "domain",
            "rule",
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


def test_the_endpoint_speaks_tls_and_wants_a_password_for_metrics(
    setup: Setup, tmp_path: Path
) -> None:
    import base64
    import ssl
    import urllib.error
    import urllib.request

    import bcrypt

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {made.stderr.decode()[-200:]}")
    setup.local_site("a")
    setup.source("www", ["a"])
    port = free_port()
    hashed = bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=4)).decode()
    setup.top["metrics"] = {
        "listen": f"127.0.0.1:{port}",
        "tls": {"cert_file": str(cert), "key_file": str(key)},
        "basic_auth_users": {"prometheus": hashed},
    }
    run_cycle(setup.runtime(), "www")
    exporter = subprocess.Popen(
        [sys.executable, "-m", "firebreak", "-c", str(setup.path), "exporter"],
        stderr=subprocess.PIPE,
    )
    context = ssl.create_default_context(cafile=str(cert))

    def fetch(path: str, password: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
        if password is not None:
            token = base64.b64encode(f"prometheus:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                fetch("/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and exporter.poll() is None, (
                    "the exporter never answered"
                )
                time.sleep(0.2)
        assert fetch("/metrics")[0] == 401
        assert fetch("/metrics", "wrong")[0] == 401
        status, body = fetch("/metrics", "scrape-pw")
        assert status == 200 and 'firebreak_source_safe{source="www"} 1.0' in body
        for page in ("/", "/runbook"):  # the pages want the same password
            assert fetch(page)[0] == 401
            status, body = fetch(page, "scrape-pw")
            assert status == 200 and body.startswith("<!doctype html>")
        assert fetch("/healthz")[0] == 200  # health stays open for load balancers and systemd
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5)  # untrusted cert
    finally:
        exporter.terminate()
        exporter.wait(10)


def test_the_exporter_on_a_history_it_cannot_read_says_so_once_and_needs_no_secrets(
    setup: Setup, tmp_path: Path
) -> None:
    from alembic import command

    from firebreak.history.database import alembic_config, make_engine

    setup.site("a", str(tmp_path / "repo"), password_file=None, password="${UNSET_PW_4471}")
    setup.source("www", ["a"])
    config = setup.write()
    history = setup.dir / "state" / "firebreak.db"
    history.parent.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{history}")
    command.upgrade(alembic_config(engine), "0001")  # a history an older firebreak wrote
    engine.dispose()
    log = tmp_path / "exporter.log"
    with running_exporter(config, log=log) as base:
        ready = get(f"{base}/readyz")
        assert ready[0] == 503
        assert "at revision 0001" in ready[1] and "firebreak db upgrade" in ready[1]
        for _ in range(3):
            status, text = get(f"{base}/metrics")
            assert status == 200
            assert value(samples(text), "firebreak_database_up") == 0
        # The status page says the status is unknown, and why, rather than a guess.
        status, page = get(f"{base}/")
        assert status == 503 and "status unknown: the run history cannot be read" in page
        assert "firebreak db upgrade" in page
        assert firebreak(config, "db", "upgrade").returncode == 0
        assert get(f"{base}/readyz") == (200, "ready\n")
        status, page = get(f"{base}/")
        assert status == 200 and "NOT SAFE: www" in page
        assert value(samples(get(f"{base}/metrics")[1]), "firebreak_database_up") == 1
    said = log.read_text()
    assert "Traceback" not in said
    assert said.count("cannot read the run history for /metrics: the history is at revision") == 1
    assert "the run history can be read again" in said
