"""Every secret a config can hold, distinctive, through the whole daemon and every way out:
no process's argv, no environment but where restic must read it (S3 keys), no log line, no
file under the state directory (the history included), no scrape, page, webhook body or URL,
no CLI output, no error text. Sites that work and sites that fail, so error paths are swept
too."""

from __future__ import annotations

import base64
import re
import threading
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from tests.integration.test_secrets import _scan_processes
from tests.support.cli import firebreak
from tests.support.daemon import DaemonProcess
from tests.support.receiver import Receiver, receiver_fixture  # noqa: F401
from tests.support.scrape import get
from tests.support.servers import LOOPBACK, RestServer, S3Server, free_port
from tests.support.setup import PASSWORD, Setup

pytestmark = pytest.mark.slow

ENV_PASSWORD = "env-pw-Vb61Qz8c"
COMMAND_PASSWORD = "cmd-pw-Lr40Tx2m"
REST_PASSWORD = "rest-pw-Hq7Ws2dk"
DEAD_REST_PASSWORD = "dead-pw-Zs93Rm5e"
HOOK_TOKEN = "hook-tok-Pn58Ke1w"
URL_TOKEN = "url-tok-Wc72Jb4q"
SCRAPE_PASSWORD = "scrape-pw-Jd27Ua9s"


def test_no_secret_leaves_by_any_way_out(
    setup: Setup,
    s3_server: S3Server,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    secrets = {
        "password_file's password": PASSWORD,
        "a password from the environment": ENV_PASSWORD,
        "password_command's password": COMMAND_PASSWORD,
        "a REST password in a URL": REST_PASSWORD,
        "a dead REST site's password in its URL": DEAD_REST_PASSWORD,
        "the S3 secret key": s3_server.env()["AWS_SECRET_ACCESS_KEY"],
        "a webhook's header token": HOOK_TOKEN,
        "a webhook's URL token": URL_TOKEN,
        "the scrape password": SCRAPE_PASSWORD,
    }
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(REST_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"fb:{hashed}\n")
    rest = RestServer(tmp_path / "rest", htpasswd=htpasswd, log_path=tmp_path / "rest.log")
    rest.start()  # before the secrets are in this environment, which it inherits
    for name, value in (
        ("FB_ENV_PASSWORD", ENV_PASSWORD),
        ("FB_REST_PASSWORD", REST_PASSWORD),
        ("FB_DEAD_PASSWORD", DEAD_REST_PASSWORD),
        ("FB_HOOK_TOKEN", HOOK_TOKEN),
        ("FB_URL_TOKEN", URL_TOKEN),
    ):
        monkeypatch.setenv(name, value)
    command = tmp_path / "say-password"
    command.write_text(f"#!/bin/sh\necho '{COMMAND_PASSWORD}'\n")
    command.chmod(0o700)

    setup.local_site("file")
    setup.local_site("env", password="${FB_ENV_PASSWORD}", password_file=None)
    setup.local_site("cmd", password_command=str(command), password_file=None)
    setup.site("rest", f"rest:http://fb:${{FB_REST_PASSWORD}}@{LOOPBACK}:{rest.port}/www")
    setup.s3_site("s3", s3_server)
    setup.site("down", f"rest:http://fb:${{FB_DEAD_PASSWORD}}@{LOOPBACK}:{free_port()}/www")
    setup.source("www", list(setup.sites), schedule="every 1h")
    setup.top["max_parallel_runs"] = 6
    setup.top["retry"] = {"attempts": 0}  # the dead site's cycle ends at once
    setup.top["metrics"]["basic_auth_users"] = {
        "prometheus": bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    }
    setup.top["notify"] = {
        "webhooks": [
            {
                "url": f"{receiver.url}/hook",
                "headers": {"Authorization": "Bearer ${FB_HOOK_TOKEN}"},
            },
            {"url": f"http://{LOOPBACK}:{free_port()}/dead?token=${{FB_URL_TOKEN}}"},
            {"url": f"{receiver.url}/hook2?token=${{FB_URL_TOKEN}}", "template": "$message"},
        ]
    }

    seen: dict[int, tuple[bytes, bytes]] = {}
    stop = threading.Event()
    scanner = threading.Thread(target=_scan_processes, args=(stop, seen))
    scanner.start()
    daemon = DaemonProcess(setup.write(), setup.dir)
    try:
        daemon.ready()
        daemon.wait_for(
            "the first cycle at every site",
            lambda: (
                len([r for r in setup.runs() if r.operation == "backup" and r.finished_at])
                >= len(setup.sites)
            ),
            timeout=120,
        )
        daemon.wait_for("both webhooks", lambda: len(receiver.requests) >= 2, timeout=10)
        listen = setup.top["metrics"]["listen"]
        answers = [get(f"http://{listen}{path}")[1] for path in ("/", "/runbook", "/readyz")]
        answers.append(_scrape(listen, SCRAPE_PASSWORD))
        assert "firebreak_last_outcome" in answers[-1]
    finally:
        stop.set()
        scanner.join()
        assert daemon.stop() == 0
        rest.close()

    runs = {run.site: run for run in setup.runs() if run.operation == "backup"}
    assert {site for site, run in runs.items() if run.status == "success"} == {
        "file", "env", "cmd", "rest", "s3"
    }, {site: run.error_message for site, run in runs.items()}  # fmt: skip
    assert runs["down"].error_class == "SiteUnreachable"

    outputs = [
        f"{done.stdout}{done.stderr}"
        for done in (
            firebreak(setup.path, *args)
            for args in (
                ("status",),
                ("status", "--json"),
                ("snapshots", "www"),
                ("validate",),
                ("placement",),
                ("check", "--site", "down"),
                ("restic", "down", "--", "snapshots"),
            )
        )
    ]
    # The errors were shown, masked: what was swept held the places a secret would be.
    assert "fb:***@" in outputs[5] and "fb:***@" in outputs[6], outputs[5:]
    assert "failed: down" in str(receiver.requests[-1][3])
    where = {
        "the daemon's log": daemon.log(),
        "HTTP answers": "\n".join(answers),
        "webhook bodies": "\n".join(repr(body) for _, _, _, body in receiver.requests),
        "CLI output": "\n".join(outputs),
        "run errors": "\n".join(run.error_message or "" for run in setup.runs()),
    }
    for path in sorted(p for p in setup.load().state_dir.rglob("*") if p.is_file()):
        where[f"{path}"] = path.read_bytes().decode("latin-1")
    restic_seen = [argv for argv, _ in seen.values() if b"/cache/sites/" in argv]
    assert len(restic_seen) >= 6, "the scanner saw too few restic processes to prove anything"
    # restic reads its own site's S3 keys and repository URL from its environment (never
    # argv); nothing else is there, not another site's, not a password.
    its_own = {
        "s3": secrets["the S3 secret key"],
        "rest": REST_PASSWORD,
        "down": DEAD_REST_PASSWORD,
    }
    for pid, (argv, environ) in seen.items():
        where[f"argv of pid {pid}"] = argv.decode("latin-1")
        site = re.search(rb"/cache/sites/([^/\0]+)\0", argv)
        if site is not None:
            allowed = its_own.get(site.group(1).decode(), "\0")
            where[f"the environment of {argv[:60]!r}"] = environ.decode("latin-1").replace(
                allowed, ""
            )
    leaks = [
        f"{name} in {place}"
        for name, secret in secrets.items()
        for place, text in where.items()
        if secret in text
    ]
    assert not leaks, leaks
    # The header token did reach the endpoint it is for.
    assert any(
        headers.get("Authorization") == f"Bearer {HOOK_TOKEN}"
        for _, _, headers, _ in receiver.requests
    )


def _scrape(listen: str, password: str) -> str:
    request = urllib.request.Request(f"http://{listen}/metrics")
    token = base64.b64encode(f"prometheus:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
        return str(response.read().decode())
