"""The status page at / in a real browser (Debian's chromium, driven by playwright): what the
person on call reads on a phone, for a healthy setup and for a failing one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from firebreak.actions.cycle import run_cycle
from firebreak.outcomes import Status
from tests.support.scrape import get, running_exporter
from tests.support.servers import RestServer
from tests.support.setup import Setup

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; make deps installs it
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: make deps installs it"
    with sync_playwright() as driver:
        # As root, chromium runs only without its sandbox; the page is our own, on loopback.
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def _guarded(setup: Setup) -> None:
    """The listener wants a password, as /metrics does."""
    hashed = bcrypt.hashpw(b"oncall-pw", bcrypt.gensalt(rounds=4)).decode()
    setup.top["metrics"] = {"basic_auth_users": {"oncall": hashed}}


def _open(browser: Browser, url: str, shot: Path) -> tuple[Page, str]:
    context = browser.new_context(
        viewport=PHONE, http_credentials={"username": "oncall", "password": "oncall-pw"}
    )
    page = context.new_page()
    answer = page.goto(url)
    assert answer is not None and answer.status == 200
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Readable on a phone: nothing wider than the screen, no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    return page, " ".join(page.inner_text("body").split())


def test_a_healthy_setup_reads_safe_on_a_phone(
    setup: Setup, browser: Browser, tmp_path: Path
) -> None:
    setup.local_site("gra")
    setup.local_site("fsn")
    setup.source("www", ["gra", "fsn"], schedule="0 3 * * *")
    _guarded(setup)
    report = run_cycle(setup.runtime(), "www")
    assert report.status == Status.SUCCESS
    with running_exporter(setup.path) as base:
        assert get(f"{base}/")[0] == 401  # same auth as /metrics
        page, text = _open(browser, f"{base}/", tmp_path / "healthy.png")
        assert page.title().startswith("safe — firebreak on ")
        assert "every source is safe (1 source)" in text
        assert "www safe" in text and "2 of 2 sites count" in text
        assert "gra fresh" in text and "fsn fresh" in text
        for run in report.runs:  # as restic's tables show them, the first 8 digits
            assert run.snapshot_id is not None and f"snapshot {run.snapshot_id[:8]} " in text
        assert "next cycle: in " in text and "(0 3 * * *)" in text
        assert "last error" not in text and "NOT SAFE" not in text


def test_a_failing_site_reads_not_safe_with_its_error_and_the_runbook_one_tap_away(
    setup: Setup,
    browser: Browser,
    tmp_path: Path,
    rest_server_factory: Callable[..., RestServer],
) -> None:
    down = rest_server_factory()
    setup.local_site("gra")
    setup.rest_site("fsn", down)
    setup.source("www", ["gra", "fsn"], min_fresh_sites=2)
    _guarded(setup)
    down.stop()
    assert run_cycle(setup.runtime(), "www").failed_sites == ["fsn"]
    with running_exporter(setup.path) as base:
        page, text = _open(browser, f"{base}/", tmp_path / "failing.png")
        assert page.title().startswith("NOT SAFE — firebreak on ")
        assert "NOT SAFE: www" in text
        assert "1 of 2 sites count (fresh, not damaged or lost), 2 required" in text
        assert "gra fresh" in text and "fsn STALE" in text
        assert "last error: SiteUnreachable" in text
        page.click("text=runbook")
        page.wait_for_url(f"{base}/runbook")
        assert page.is_visible("h2#firebreaksitestale")
        assert "FirebreakSiteStale" in page.inner_text("h2#firebreaksitestale")
