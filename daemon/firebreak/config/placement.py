"""The placement policy's keys (the rules themselves live in firebreak.placement)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from firebreak.config.base import Strict

FailureDomain = Literal["provider", "region", "country", "datacenter"]
FAILURE_DOMAINS: tuple[FailureDomain, ...] = ("provider", "region", "country", "datacenter")


class PlacementPolicy(Strict):
    """The rules a source's sites must satisfy (see docs/placement.md)."""

    min_sites: int = Field(default=3, ge=1, description="At least this many sites per source.")
    distinct: list[FailureDomain] = Field(
        default_factory=lambda: list[FailureDomain](["datacenter"]),
        description=(
            "Location fields that must differ between every two sites of a source. "
            "datacenter is always included."
        ),
        examples=[["datacenter", "provider", "country"]],
    )
    min_distance_km: float | None = Field(
        default=None,
        gt=0,
        description="Every two sites at least this far apart (needs lat/lon on every site).",
    )
    enforce: Literal["error", "warn"] = Field(
        default="error",
        description=(
            "error: a violation is a config error and the daemon will not start; "
            "warn: print it loudly and carry on (for demos and migrations only)."
        ),
    )


class SourcePlacement(Strict):
    """A source's additions to the global placement policy: it may only tighten it."""

    min_sites: int | None = Field(default=None, ge=1, description="Raise the minimum site count.")
    distinct: list[FailureDomain] = Field(
        default_factory=list, description="More location fields that must differ."
    )
    min_distance_km: float | None = Field(
        default=None, gt=0, description="Raise the minimum distance between sites."
    )
    enforce: Literal["error", "warn"] | None = Field(
        default=None, description="error: make violations errors for this source."
    )
