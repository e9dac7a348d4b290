"""Finding restic and reading its version once at start."""

from __future__ import annotations

import os
import shutil

from firebreak.outcomes import ResticUnavailable
from firebreak.restic import commands
from firebreak.restic.runner import run
from firebreak.restic.version import MINIMUM, ResticVersion, parse_version


def detect_version(binary: str) -> ResticVersion:
    """The version of the restic program, or ResticUnavailable saying what is wrong."""
    if os.sep not in binary and shutil.which(binary) is None:
        raise ResticUnavailable(
            f"restic program {binary!r} not found on PATH (install the restic package, "
            "or set restic.binary)"
        )
    result = run(commands.version(binary, os.environ), timeout=30)
    if result.exit_code != 0:
        raise ResticUnavailable(f"{binary} version failed: {result.error_message()}")
    try:
        version = parse_version("\n".join(result.stdout_lines))
    except ValueError as exc:
        raise ResticUnavailable(str(exc)) from None
    if version < MINIMUM:
        raise ResticUnavailable(
            f"restic {version} is older than {MINIMUM}, the oldest release firebreak supports"
        )
    return version
