"""Restored files against the live ones: a live file can stand for the snapshot's copy only if
nothing touched it since the snapshot was taken."""

from __future__ import annotations

from pathlib import Path


def untouched_since(path: Path, taken: float) -> bool:
    """Neither its content nor its metadata changed since then. The mtime alone can lie
    (package managers, `cp -p`, `rsync -a` and `tar x` set it back); the ctime cannot be
    set back."""
    status = path.stat()
    return status.st_mtime <= taken and status.st_ctime <= taken
