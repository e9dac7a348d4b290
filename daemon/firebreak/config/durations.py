"""Durations as sysadmins write them: ``90s``, ``30m``, ``26h``, ``7d``, ``1w``, ``1d12h``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
DURATION_PATTERN = r"^(\d+[smhdw])+$"


def parse_duration(text: str) -> timedelta:
    """Parse ``1d12h`` style text; raise ValueError with the accepted form on anything else."""
    cleaned = text.strip().lower()
    if not re.fullmatch(DURATION_PATTERN, cleaned):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, "
            "such as 90s, 30m, 26h, 7d or 1d12h"
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _PART.findall(cleaned))
    if seconds == 0:
        raise ValueError(f"{text!r} is zero: a duration must be longer than that")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest ``1d12h`` text for a duration (whole seconds)."""
    remaining = int(value.total_seconds())
    if remaining <= 0:
        return "0s"
    parts = []
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if unit == "w" and remaining % size:
            continue  # 10d reads better than 1w3d
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
