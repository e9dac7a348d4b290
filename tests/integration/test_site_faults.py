"""A site whose storage or server fails, for real: a full filesystem, one remounted read-only,
a server answering 500. Each time the faulty site's run ends soon with its own error class,
the other site succeeds, what the faulty site already held still restores and passes
restic check, and status tells the truth."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from firebreak.actions.backup import _full_instead
from firebreak.actions.check import check_site
from firebreak.actions.cycle import run_cycle
from firebreak.outcomes import SiteFull, Stalled, Status
from firebreak.restic.access import resolve_site
from tests.support.cli import firebreak
from tests.support.mounts import tmpfs
from tests.support.restore import restore_snapshot
from tests.support.servers import LOOPBACK, free_port
from tests.support.setup import Setup

pytestmark = pytest.mark.root


def _site_status(setup: Setup, site: str) -> dict[str, object]:
    shown = firebreak(setup.path, "status", "--json")
    [source] = json.loads(shown.stdout)["sources"]
    return next(entry for entry in source["sites"] if entry["site"] == site)


def _faulty_cycle(setup: Setup, faulty: str, error_class: str) -> str:
    """A cycle to a healthy site and the faulty one: the faulty run's message."""
    rt = setup.runtime()
    started = time.monotonic()
    report = run_cycle(rt, "www")
    elapsed = time.monotonic() - started
    by_site = {run.site: run for run in report.runs}
    assert by_site["a"].status == Status.SUCCESS
    assert (by_site[faulty].status, by_site[faulty].error_class) == (Status.FAILED, error_class)
    assert elapsed < 90, f"the cycle took {elapsed:.0f}s"
    return by_site[faulty].error_message or ""


def _still_holds(setup: Setup, site: str, snapshot: str, tmp_path: Path) -> None:
    """What the site held before the fault restores whole, and restic check passes there."""
    target = tmp_path / f"restored-{site}"
    restore_snapshot(setup.load(), site, snapshot, target)
    readme = setup.source_dir / "docs" / "readme.txt"
    assert (target / readme.relative_to("/")).read_text() == readme.read_text()
    checked = check_site(setup.runtime(), site)
    assert checked.status == Status.SUCCESS, checked.error_message


def _first_snapshot(setup: Setup, site: str) -> str:
    rt = setup.runtime()
    report = run_cycle(rt, "www")
    assert report.status == Status.SUCCESS, [(r.site, r.error_message) for r in report.runs]
    [run] = [run for run in report.runs if run.site == site]
    assert run.snapshot_id
    return run.snapshot_id


@pytest.mark.restic_matrix
def test_a_full_site_fails_as_full_and_keeps_what_it_held(setup: Setup, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="24m") as small:
        setup.local_site("a")
        # restic now and then hangs at a full disk without a word: the stall detector ends it
        # (and the site's free space names it full) well within the cycle's bound.
        setup.site("full", str(small / "repo"), stall_timeout="20s")
        setup.source("www", ["a", "full"])
        kept = _first_snapshot(setup, "full")
        # Random data does not compress: more than the site can take.
        (setup.source_dir / "big.bin").write_bytes(os.urandom(40_000_000))

        message = _faulty_cycle(setup, "full", "SiteFull")

        assert "no space left on device" in message
        _still_holds(setup, "full", kept, tmp_path)
        seen = _site_status(setup, "full")
        assert seen["last_outcome"] == "failed" and "SiteFull" in str(seen["last_error"])
        assert seen["snapshot_id"] == kept


def test_a_read_only_site_fails_as_read_only_and_keeps_what_it_held(
    setup: Setup, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "disk", size="32m") as disk:
        setup.local_site("a")
        setup.site("ro", str(disk / "repo"))
        setup.source("www", ["a", "ro"])
        kept = _first_snapshot(setup, "ro")
        (setup.source_dir / "new.txt").write_text("after the snapshot\n")
        _remount(disk, "ro")
        try:
            message = _faulty_cycle(setup, "ro", "SiteReadOnly")
        finally:
            _remount(disk, "rw")

        assert "read-only file system" in message
        _still_holds(setup, "ro", kept, tmp_path)
        seen = _site_status(setup, "ro")
        assert "SiteReadOnly" in str(seen["last_error"]) and seen["snapshot_id"] == kept


@pytest.mark.restic_matrix
def test_a_site_answering_500_fails_soon_as_a_server_error(setup: Setup) -> None:
    """restic 0.14 gives up at once; 0.18 and later would retry for 15 minutes."""
    with _failing_server() as port:
        setup.local_site("a")
        setup.site("broken", f"rest:http://{LOOPBACK}:{port}/repo")
        setup.source("www", ["a", "broken"])

        message = _faulty_cycle(setup, "broken", "SiteServerError")

    assert "500" in message
    assert "broken" in str(_site_status(setup, "broken")["site"])


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


@contextmanager
def _failing_server() -> Iterator[int]:
    """An HTTP server on loopback that answers every request with 500."""

    class Failing(http.server.BaseHTTPRequestHandler):
        def _fail(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_DELETE = _fail

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, free_port()), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_stall_at_a_local_site_with_no_room_left_is_a_full_site(
    setup: Setup, tmp_path: Path
) -> None:
    """restic (0.14 and 0.18 seen) now and then hangs at a full disk without a word: the
    stall detector stops it, and the site's filesystem says why. restic 0.14 was seen hanging
    with 8 MiB free, where a 16 MiB pack it could not finish had been."""
    with tmpfs(tmp_path / "small", size="24m") as small:
        setup.site("full", str(small / "repo" / "data"))
        setup.local_site("roomy")
        setup.source("www", ["full", "roomy"])
        config = setup.load()
        stalled = Stalled("stopped after 120s without progress")
        roomy = _full_instead(resolve_site("roomy", config.sites["roomy"]), stalled)
        assert roomy is stalled
        (small / "filler").write_bytes(b"\0" * (16 << 20))  # 8 MiB left
        full = _full_instead(resolve_site("full", config.sites["full"]), stalled)
        assert isinstance(full, SiteFull)
        assert full.message.startswith(f"no space left on device at {small} (")
        assert full.message.endswith("; stopped after 120s without progress")
