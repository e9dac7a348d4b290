"""The restic releases the tests run: the system's, and those `make restic-versions` unpacked
(tests/support/restic-versions.sh) from Debian trixie and sid into a cache.

A test marked ``restic_matrix`` runs once per release; every other test uses the system's.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from firebreak.restic.version import ResticVersion, parse_version

# Where make restic-versions puts them (the Makefile passes the same path).
CACHE = Path(
    os.environ.get("FIREBREAK_TEST_RESTICS") or Path.home() / ".cache/firebreak-tests/restic"
)
SYSTEM = "restic"


def cached() -> dict[str, Path]:
    """version → binary, for every release in the cache."""
    found: dict[str, Path] = {}
    if CACHE.is_dir():
        for entry in sorted(CACHE.iterdir()):
            binary = entry / "usr/bin/restic"
            if os.access(binary, os.X_OK):
                found[entry.name] = binary
    return found


def system_version() -> ResticVersion | None:
    program = shutil.which(SYSTEM)
    if program is None:
        return None
    done = subprocess.run([program, "version"], capture_output=True, text=True, check=False)
    return parse_version(done.stdout)


@functools.cache
def matrix() -> dict[str, str]:
    """test id → restic binary: the system's first, then each cached release it is not."""
    system = system_version()
    releases = {f"restic-{system}" if system else "restic-system": SYSTEM}
    for version, binary in cached().items():
        if system is None or version != str(system):
            releases[f"restic-{version}"] = str(binary)
    return releases
