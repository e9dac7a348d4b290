"""The placement policy's keys (the rules themselves live in firebreak.placement)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from firebreak.config.base import COUNTRY_PATTERN, Strict

FailureDomain = Literal["provider", "region", "country", "datacenter"]
FAILURE_DOMAINS: tuple[FailureDomain, ...] = ("provider", "region", "country", "datacenter")
# The parts of 3-2-1-1-0 (firebreak/scorecard.py): 3 copies, 2 kinds of storage, 1 offsite,
# 1 immutable, 0 errors in restore verification.
Rule = Literal["copies", "kinds", "offsite", "immutable", "verified"]
RULES: tuple[Rule, ...] = ("copies", "kinds", "offsite", "immutable", "verified")


class Endpoint(Strict):
    """Where a storage endpoint is: added to (and ahead of) firebreak's own table of
    well-known object-storage endpoints, which sites' declared locations are checked against."""

    host: str = Field(
        min_length=1,
        description=(
            "The endpoint's host name; * stands for any run of characters: "
            "*.s3.example.net matches s3.example.net and its bucket-style names."
        ),
        examples=["s3.par.example.net"],
    )
    provider: str = Field(min_length=1, description="Who runs it.", examples=["example"])
    region: str | None = Field(
        default=None, min_length=1, description="Its region, as the provider names it."
    )
    country: str | None = Field(
        default=None, pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2 country code."
    )


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
    min_offsite: int = Field(
        default=1,
        ge=0,
        description=(
            "At least this many of a source's sites offsite: outside this host's datacenter "
            "(and at least offsite_km from it, when set). Checked when the host's location "
            "is set."
        ),
    )
    offsite_km: float | None = Field(
        default=None,
        gt=0,
        description=(
            "A site counts as offsite only this far from the host (needs lat/lon on the "
            "host's location and the site's)."
        ),
    )
    endpoints: list[Endpoint] = Field(
        default_factory=list,
        description=(
            "Storage endpoints and where they are, ahead of firebreak's own table: a site "
            "whose declared provider, region or country contradicts its endpoint is warned "
            "about (docs/placement.md)."
        ),
    )
    require: list[Rule] = Field(
        default_factory=list,
        description=(
            "Parts of 3-2-1-1-0 every source must meet (copies, kinds, offsite, immutable, "
            "verified): a config that cannot is a placement violation, and one broken at run "
            "time fires FirebreakSourceRuleBroken (docs/placement.md)."
        ),
        examples=[["offsite", "immutable"]],
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
    min_offsite: int | None = Field(
        default=None, ge=0, description="Raise the minimum number of offsite sites."
    )
    require: list[Rule] = Field(
        default_factory=list, description="More parts of 3-2-1-1-0 this source must meet."
    )
    enforce: Literal["error", "warn"] | None = Field(
        default=None, description="error: make violations errors for this source."
    )
