"""Freshness: is each site's last success younger than the source's max_age, and is the
source safe (at least min_fresh_sites fresh)? Computed from recorded runs, never from restic."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from firebreak.config.durations import format_seconds
from firebreak.config.model import Config
from firebreak.history.records import Latest


@dataclass(frozen=True)
class SiteFreshness:
    site: str
    fresh: bool
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    snapshot_id: str | None
    bytes_added: int | None
    age_seconds: float | None


@dataclass(frozen=True)
class SourceFreshness:
    source: str
    max_age_seconds: float
    required_fresh_sites: int
    fresh_sites: int
    safe: bool
    sites: list[SiteFreshness]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_age"] = format_seconds(self.max_age_seconds)
        for site in data["sites"]:
            for key in ("last_success_at", "last_attempt_at"):
                if site[key] is not None:
                    site[key] = site[key].isoformat()
        return data


def freshness(
    config: Config, latest: dict[tuple[str, str], Latest], now: datetime
) -> list[SourceFreshness]:
    """One entry per configured source, its sites in configured order."""
    report = []
    for source_name, source in config.sources.items():
        max_age = source.max_age.total_seconds()
        sites = []
        for site_name in source.sites:
            entry = latest.get((source_name, site_name))
            attempt = entry.last_attempt if entry else None
            success = entry.last_success if entry else None
            # A snapshot holds the data as it was when its backup started: that is its age.
            success_at = success.started_at if success else None
            age = (now - success_at).total_seconds() if success_at else None
            error = None
            if attempt is not None and attempt.error_class:
                error = f"{attempt.error_class}: {attempt.error_message or ''}".rstrip(": ")
            sites.append(
                SiteFreshness(
                    site=site_name,
                    fresh=age is not None and age < max_age,
                    last_success_at=success_at,
                    last_attempt_at=attempt.started_at if attempt else None,
                    last_outcome=attempt.status if attempt else None,
                    last_error=error,
                    snapshot_id=success.snapshot_id if success else None,
                    bytes_added=success.bytes_added if success else None,
                    age_seconds=age,
                )
            )
        fresh = sum(1 for site in sites if site.fresh)
        report.append(
            SourceFreshness(
                source=source_name,
                max_age_seconds=max_age,
                required_fresh_sites=source.required_fresh_sites,
                fresh_sites=fresh,
                safe=fresh >= source.required_fresh_sites,
                sites=sites,
            )
        )
    return report
