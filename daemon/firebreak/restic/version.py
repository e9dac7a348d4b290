"""restic's version, and which features each version has (one table, checked in one place)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ResticVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


MINIMUM = ResticVersion(0, 14, 0)
_VERSION = re.compile(r"restic (\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Feature:
    """Something restic gained in a release, that firebreak uses where it is there."""

    since: ResticVersion
    what: str


class Features:
    """The table (docs/restic-versions.md shows it). An option firebreak passes is gated
    through ``supports``: older restic would refuse it. Output only newer restic prints is
    read wherever it appears, and is listed for the record."""

    RETRY_LOCK = Feature(ResticVersion(0, 16, 0), "--retry-lock: wait for another's lock")
    # Not needed: restore progress is read from restic's I/O counters on every release.
    RESTORE_PROGRESS = Feature(ResticVersion(0, 16, 0), "restore --json prints progress")
    EXIT_CODES_10_TO_12 = Feature(
        ResticVersion(0, 17, 0), "exit 10 no repository, 11 locked, 12 wrong password"
    )
    FORGET_KEEPS_OLDEST = Feature(
        ResticVersion(0, 17, 0),
        "forget keeps the oldest snapshot while a --keep-* rule has room for more",
    )
    JSON_EXIT_ERROR = Feature(ResticVersion(0, 18, 0), "a JSON exit_error on stderr")
    CHECK_SUMMARY = Feature(ResticVersion(0, 18, 0), "check --json prints its findings' count")
    # Seen on 0.18 and 0.19, not on 0.14 (the releases between are not at hand to tell).
    RETRIES_A_DEAD_SITE = Feature(
        ResticVersion(0, 18, 0), "retries a refused connection for up to 15 minutes"
    )
    DELETE_REFUSED_AT_ONCE = Feature(
        ResticVersion(0, 18, 0), "a refused delete is not retried: forget exits 3"
    )
    MISSING_SOURCE_EXIT_3 = Feature(ResticVersion(0, 19, 0), "a missing source path exits 3, not 0")


def parse_version(text: str) -> ResticVersion:
    """``restic 0.14.0 compiled with go1.19.8 on linux/amd64`` → 0.14.0."""
    match = _VERSION.search(text)
    if not match:
        raise ValueError(f"cannot read a restic version from {text.strip()[:80]!r}")
    return ResticVersion(*(int(part) for part in match.groups()))


def supports(version: ResticVersion, feature: Feature) -> bool:
    return version >= feature.since
