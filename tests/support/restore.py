"""Restoring a snapshot with the real restic and comparing it byte for byte with the source."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

from firebreak.config import Config
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site


def restore_snapshot(config: Config, site_name: str, snapshot: str, target: Path) -> None:
    access = resolve_site(site_name, config.sites[site_name])
    at = commands.SiteRestic.of(config, access, os.environ)
    invocation = commands.restore(at, snapshot=snapshot, target=target)
    result = runner.run(invocation, timeout=120)
    assert result.exit_code == 0, f"restore from {site_name} failed: {result.error_message()}"


def assert_same_tree(original: Path, restored: Path) -> None:
    """Every file, directory and link of original is in restored with the same content."""
    compared = 0
    for directory, dirnames, filenames in os.walk(original):
        relative = Path(directory).relative_to(original)
        for name in dirnames + filenames:
            source = Path(directory) / name
            copy = restored / relative / name
            assert copy.exists() or copy.is_symlink(), f"{relative / name} missing after restore"
            if source.is_symlink():
                assert os.readlink(copy) == os.readlink(source)
            elif source.is_file():
                assert filecmp.cmp(source, copy, shallow=False), f"{relative / name} differs"
                compared += 1
    assert compared > 0
    extra = {p.relative_to(restored) for p in restored.rglob("*")} - {
        p.relative_to(original) for p in original.rglob("*")
    }
    assert not extra, f"restore produced files the source does not have: {sorted(extra)}"
