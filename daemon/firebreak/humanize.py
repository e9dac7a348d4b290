"""Numbers for people: ages, durations and sizes as tables and messages show them."""

from __future__ import annotations

from datetime import timedelta

from firebreak.config.durations import format_duration


def humanize_age(seconds: float) -> str:
    """A short age for tables: ``42s``, ``17m``, ``5h12m``, ``3d4h``."""
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        hours, rest = divmod(whole, 3600)
        return f"{hours}h{rest // 60:02d}m"
    days, rest = divmod(whole, 86400)
    return f"{days}d{rest // 3600}h"


def format_seconds(seconds: float) -> str:
    """Seconds as the config writes durations: ``1d12h``."""
    return format_duration(timedelta(seconds=seconds))


def format_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 site``, ``3 sites``, ``0 sites`` (``many`` where adding an s is wrong)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def short_id(snapshot_id: str | None) -> str:
    """A snapshot id as restic shows it in tables (its first 8 hex digits)."""
    return snapshot_id[:8] if snapshot_id else "-"
