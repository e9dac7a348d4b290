"""The disaster rehearsal, with the real restic: lose each site in turn."""

from __future__ import annotations

import subprocess

import pytest

from firebreak.cycles.cycle import run_cycle
from firebreak.history.models import Status
from tests.support.cli import firebreak
from tests.support.setup import Setup


def _drill(setup: Setup, site: str) -> subprocess.CompletedProcess[str]:
    return firebreak(setup.path, "drill", "--fire", site)


def test_every_source_survives_losing_any_one_site(setup: Setup) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.local_site("c")
    setup.source("www", ["a", "b", "c"])
    setup.source("docs", ["b", "c"], paths=[str(setup.source_dir / "docs")])
    assert {run_cycle(setup.runtime(), name).status for name in ("www", "docs")} == {Status.SUCCESS}
    for site in ("a", "b", "c"):
        done = _drill(setup, site)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"www: survives the loss of {site}: restored from " in done.stdout
        assert "files compared, intact" in done.stdout
        sources = [line.split(":")[0] for line in done.stdout.splitlines()]
        assert sources == (["www"] if site == "a" else ["www", "docs"])
    assert not any((setup.dir / "state" / "drills").iterdir()), (
        "the scratch restore was left behind"
    )


def test_a_source_with_no_other_site_is_reported_lost(setup: Setup) -> None:
    setup.local_site("only")
    setup.source("www", ["only"])
    run_cycle(setup.runtime(), "www")
    done = _drill(setup, "only")
    assert done.returncode == 4
    assert "www: LOST — could not be restored without only" in done.stdout


def test_a_damaged_copy_is_caught_by_the_byte_comparison(setup: Setup) -> None:
    # The live file changes but keeps an old mtime: the restored bytes no longer match and
    # nothing explains it — exactly what the rehearsal exists to catch.
    import os

    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    run_cycle(setup.runtime(), "www")
    readme = setup.source_dir / "docs" / "readme.txt"
    stat = readme.stat()
    readme.write_text("tampered\n")
    os.utime(readme, (stat.st_atime, stat.st_mtime - 3600))
    done = _drill(setup, "a")
    assert done.returncode == 4
    assert "1 file(s) DIFFER" in done.stdout and f"differs: {readme}" in done.stdout


@pytest.mark.parametrize("site", ["nope"])
def test_unknown_site(setup: Setup, site: str) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    setup.write()
    done = _drill(setup, site)
    assert done.returncode == 2 and "no site 'nope'" in done.stderr
