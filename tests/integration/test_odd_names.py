"""File names that break scripts: spaces, a newline, leading dashes, shell syntax, bytes that
are not UTF-8, a path of 4 KiB. They back up, restore byte for byte, and a restore drill that
samples every one of them passes, on every restic (restic is never run through a shell)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firebreak.actions.cycle import run_cycle
from firebreak.actions.restore import restore_source
from firebreak.actions.restore_drill import drill_site
from firebreak.outcomes import Status
from tests.support.restore import assert_same_tree
from tests.support.servers import RestServer
from tests.support.setup import Setup

ODD_NAMES = [
    "with space.txt",
    "new\nline.txt",
    "-leading-dash",
    "--help",
    "$(touch pwned);`id`|x&y>z",
    "*glob?[x]",
    "tab\tand\rreturn",
    "'quote\"double",
    "Ünïcödé ☃.txt",
]
NOT_UTF8 = os.fsdecode(b"latin-1 caf\xe9 \xff\xfe")


def _odd_tree(root: Path) -> Path:
    odd = root / "odd"
    odd.mkdir()
    for number, name in enumerate([*ODD_NAMES, NOT_UTF8]):
        (odd / name).write_bytes(f"{number}: {name!r}\n".encode("utf-8", "surrogateescape"))
    (odd / "-dir with space").mkdir()
    (odd / "-dir with space" / "--inner").write_text("inside\n")
    # Nearly 4 KiB of path (restored under a longer one, it must stay within PATH_MAX):
    # directories of 200 characters each (a name may have 255 bytes).
    deep = odd
    while len(os.fsencode(deep)) < 3800 - 210:
        deep = deep / ("d" * 199)
    deep.mkdir(parents=True)
    (deep / "end.txt").write_text("at the bottom\n")
    assert len(os.fsencode(deep / "end.txt")) >= 3600
    return odd


@pytest.mark.restic_matrix
def test_odd_file_names_back_up_restore_and_drill_intact(
    setup: Setup, rest_server: RestServer, tmp_path: Path
) -> None:
    _odd_tree(setup.source_dir)
    setup.local_site("a", drill_files=10_000, drill_max_bytes=10_000_000)
    setup.rest_site("r", rest_server, drill_files=10_000, drill_max_bytes=10_000_000)
    setup.source("www", ["a", "r"])
    rt = setup.runtime()

    report = run_cycle(rt, "www")
    assert report.status == Status.SUCCESS, [(r.site, r.error_message) for r in report.runs]

    for site in ("a", "r"):
        target = tmp_path / f"restored-{site}"
        restored = restore_source(rt, "www", target, site=site)
        assert restored.restored is not None, restored.attempts
        assert_same_tree(setup.source_dir, target / setup.source_dir.relative_to("/"))
        # A drill samples every file here (drill_files is larger than the tree).
        drilled = drill_site(rt, "www", site)
        assert drilled.status == Status.SUCCESS, drilled.error_message
    assert not (setup.dir / "pwned").exists() and not Path("pwned").exists()
