"""restic's version, and which features each version has (one table, checked in one place)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, order=True)
class ResticVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


MINIMUM = ResticVersion(0, 14, 0)
_VERSION = re.compile(r"restic (\d+)\.(\d+)\.(\d+)")


class Feature(Enum):
    """Things restic gained over time that firebreak uses when present."""

    EXIT_CODES_10_TO_12 = ResticVersion(0, 17, 0)  # 10 no repo, 11 locked, 12 wrong password
    RETRY_LOCK = ResticVersion(0, 16, 0)  # --retry-lock
    JSON_EXIT_ERROR = ResticVersion(0, 17, 0)  # {"message_type":"exit_error"} on stderr
    RESTORE_PROGRESS = ResticVersion(0, 16, 0)  # restore --json prints status lines


def parse_version(text: str) -> ResticVersion:
    """``restic 0.14.0 compiled with go1.19.8 on linux/amd64`` → 0.14.0."""
    match = _VERSION.search(text)
    if not match:
        raise ValueError(f"cannot read a restic version from {text.strip()[:80]!r}")
    return ResticVersion(*(int(part) for part in match.groups()))


def supports(version: ResticVersion, feature: Feature) -> bool:
    return version >= feature.value
