"""restic's local cache: one directory per repository, named by the repository's id."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

REPOSITORY_ID = re.compile(r"^[0-9a-f]{64}$")


def cached_repositories(cache: Path) -> set[str]:
    """The ids of the repositories restic keeps a cache of in this directory."""
    try:
        return {entry.name for entry in cache.iterdir() if REPOSITORY_ID.match(entry.name)}
    except OSError:
        return set()


def forget_cached(cache: Path, keep: str | None = None) -> None:
    """Remove restic's cache of every repository but ``keep`` (a cache only: restic refills
    it from the repository)."""
    for name in cached_repositories(cache) - {keep}:
        shutil.rmtree(cache / name, ignore_errors=True)
