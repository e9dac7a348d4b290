"""During a real cycle, secrets appear in no argv, no log line and no database row."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from firebreak.actions.cycle import run_cycle
from firebreak.outcomes import Status
from tests.support.servers import S3Server
from tests.support.setup import PASSWORD, Setup

ENV_PASSWORD = "pipe-delivered-Zq8v3LmT"
REST_SECRET = "url-credential-Kx93ff"


def _scan_processes(stop: threading.Event, seen: dict[int, tuple[bytes, bytes]]) -> None:
    while not stop.is_set():
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes() if b"restic" in cmdline else b""
            except OSError:
                continue
            seen[int(proc.name)] = (cmdline, environ)
        stop.wait(0.02)


def test_secrets_stay_out_of_argv_logs_and_database(
    setup: Setup,
    s3_server: S3Server,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FB_TEST_PASSWORD", ENV_PASSWORD)
    monkeypatch.setenv("FB_REST_SECRET", REST_SECRET)
    setup.local_site("file")
    setup.local_site("piped", password="${FB_TEST_PASSWORD}", password_file=None)
    setup.s3_site("s3", s3_server)
    # A site that fails, with a credential in its URL: its error must not carry the secret.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    setup.site("down", f"rest:http://backup:${{FB_REST_SECRET}}@127.0.0.1:{port}/repo")
    setup.source("www", ["file", "piped", "s3", "down"])
    setup.top["max_parallel_runs"] = 4
    s3_secret = s3_server.env()["AWS_SECRET_ACCESS_KEY"]
    rt = setup.runtime()
    caplog.set_level(logging.DEBUG)
    seen: dict[int, tuple[bytes, bytes]] = {}
    stop = threading.Event()
    scanner = threading.Thread(target=_scan_processes, args=(stop, seen))
    scanner.start()
    try:
        report = run_cycle(rt, "www")
    finally:
        stop.set()
        scanner.join()

    by_site = {run.site: run for run in report.runs}
    assert all(by_site[s].status == Status.SUCCESS for s in ("file", "piped", "s3")), report.runs
    assert by_site["down"].error_class == "SiteUnreachable"
    assert "connection refused" in (by_site["down"].error_message or "")
    restic_processes = [cmd for cmd, _ in seen.values() if b"restic" in cmd and b"backup" in cmd]
    assert restic_processes, "the scanner saw no restic process: the check proved nothing"
    secrets = [PASSWORD, ENV_PASSWORD, s3_secret, REST_SECRET]
    for cmdline, environ in seen.values():
        for secret in secrets:
            assert secret.encode() not in cmdline
        # The piped password is not even in restic's environment.
        assert ENV_PASSWORD.encode() not in environ
    for record in caplog.records:
        for secret in secrets:
            assert secret not in record.getMessage()
    with rt.engine.connect() as connection:
        rows = [
            repr(tuple(row))
            for table in ("runs", "cycles")
            for row in connection.execute(text(f"SELECT * FROM {table}"))
        ]
    assert len(rows) == 8  # 3 init + 4 backup runs, 1 cycle
    database_file = (rt.config.state_dir / "firebreak.db").read_bytes()
    for secret in secrets:
        assert not any(secret in row for row in rows)
        assert secret.encode() not in database_file
