"""The disaster rehearsal, with the real restic: lose each site in turn."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import datetime, timedelta

import pytest

from firebreak.actions.cycle import run_cycle
from firebreak.outcomes import Status
from tests.support.cli import firebreak
from tests.support.mounts import tmpfs
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


@pytest.mark.restic_matrix
def test_a_source_with_no_other_site_is_reported_lost(setup: Setup) -> None:
    setup.local_site("only")
    setup.source("www", ["only"])
    run_cycle(setup.runtime(), "www")
    done = _drill(setup, "only")
    assert done.returncode == 4
    assert "www: LOST — could not be restored without only" in done.stdout


@pytest.mark.restic_matrix
def test_a_copy_that_differs_from_an_untouched_file_is_caught(setup: Setup) -> None:
    """The copies hold bytes the live file never had since the snapshot: the snapshot (taken
    by plain restic, dated a day ahead) says the file was 'original', the file has said
    'tampered' since before that date. Nothing explains the difference: DIFFER."""
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    config = setup.load()
    readme = setup.source_dir / "docs" / "readme.txt"
    readme.write_text("original\n")
    ahead = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    for name in ("a", "b"):
        environment = {
            **os.environ,
            "RESTIC_PASSWORD_FILE": str(setup.password_file),
            "RESTIC_REPOSITORY": str(config.sites[name].repository),
        }
        for command in (
            ["init"],
            [
                "backup",
                "--host",
                socket.gethostname(),
                "--tag",
                "firebreak.source=www",
                "--time",
                ahead,
                str(setup.source_dir),
            ],
        ):
            done = subprocess.run(
                ["restic", *command], env=environment, capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, done.stderr
    readme.write_text("tampered\n")

    done = _drill(setup, "a")

    assert done.returncode == 4, done.stdout + done.stderr
    assert "1 file DIFFER" in done.stdout and f"differs: {readme}" in done.stdout


def test_a_file_changed_with_its_mtime_set_back_is_not_taken_for_damage(setup: Setup) -> None:
    # Package managers, cp -p and tar x set the mtime back; the ctime still tells.
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    run_cycle(setup.runtime(), "www")
    readme = setup.source_dir / "docs" / "readme.txt"
    stat = readme.stat()
    readme.write_text("upgraded\n")
    os.utime(readme, (stat.st_atime, stat.st_mtime - 3600))

    done = _drill(setup, "a")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "DIFFER" not in done.stdout


@pytest.mark.parametrize("site", ["nope"])
def test_unknown_site(setup: Setup, site: str) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    setup.write()
    done = _drill(setup, site)
    assert done.returncode == 2 and "no site 'nope'" in done.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_drill_that_fills_its_own_disk_does_not_damage_the_site(setup: Setup) -> None:
    """state_dir (where the drill restores its sample) is a 1 MB tmpfs, the sample is 3 MB:
    the drill fails on this machine's disk, which says nothing about the site's data."""
    (setup.source_dir / "big.bin").write_bytes(os.urandom(3_000_000))
    setup.local_site("a", drill_files=1000)
    setup.local_site("b", drill_files=1000)
    setup.source("www", ["a", "b"])
    setup.top["database"] = {"url": f"sqlite:///{setup.dir / 'history.db'}"}
    setup.top["restic"] = {"cache_dir": str(setup.dir / "cache")}
    with tmpfs(setup.dir / "state", size="1m"):
        assert run_cycle(setup.runtime(), "www").status == Status.SUCCESS

        done = firebreak(setup.path, "drill", "www", "--site", "a")
        status = firebreak(setup.path, "status", "--json")

    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stdout.startswith("a: failed: DrillScratchFailed: writing the scratch copy in ")
    assert "no space left on device" in done.stdout
    [www] = json.loads(status.stdout)["sources"]
    assert www["sites"][0]["damaged"] is None and www["safe"], status.stdout
