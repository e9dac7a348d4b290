"""3-2-1-1-0, verified for each source from what the history proves, not from labels alone.

- **copies** (3): sites that hold a fresh backup of the source, neither damaged nor lost;
- **kinds** (2): kinds of storage among those copies: two sites are of different kinds when
  their backends differ (local, sftp, rest, s3, …) or their providers do;
- **offsite** (1): those copies outside this host's datacenter (placement.min_offsite's rule;
  unknown without the host's location);
- **immutable** (1): those copies at a site declared append_only whose newest immutability
  proof saw it refuse a delete (actions/immutability.py), within the proof schedule's gap plus
  a day (at least 8 days);
- **verified** (0 errors): every site of the source had its newest restic check and restore
  drill pass, each within its schedule's gap plus a day (at least 8 days), as the stale
  alerts count (a site backed up more recently than that, and not yet checked or drilled, is
  not counted against it); a site where either is not scheduled cannot be verified.

``placement.require`` names the rules a source must meet: a config that cannot is a placement
violation (placement/policy.py), and a rule broken at run time fires FirebreakSourceRuleBroken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from firebreak.clock import Deadline, within
from firebreak.config.placement import Rule
from firebreak.fleet import HostProfile, SiteProfile
from firebreak.history.freshness import Proof, SourceFreshness
from firebreak.outcomes import Status

TARGETS: dict[Rule, int] = {"copies": 3, "kinds": 2, "offsite": 1, "immutable": 1, "verified": 0}
DAY = 86400.0


def window(interval: float) -> float:
    """How old the newest passing check or drill may be: its schedule's gap plus a day, at
    least 8 days (FirebreakCheckStale and FirebreakRestoreDrillStale count the same)."""
    return max(interval + DAY, 8 * DAY)


@dataclass(frozen=True)
class RuleState:
    rule: Rule
    # How many (for verified: how many sites with errors); None: it cannot be known.
    count: int | None
    target: int
    required: bool
    # The sites counted, or what is missing, in a few words.
    detail: str

    @property
    def ok(self) -> bool:
        if self.count is None:
            return False
        if self.rule == "verified":
            return self.count <= self.target
        return self.count >= self.target

    @property
    def shown(self) -> str:
        """``3/3``, ``0 errors``, ``?/1``."""
        if self.rule == "verified":
            return "? errors" if self.count is None else f"{self.count} errors"
        return f"{'?' if self.count is None else self.count}/{self.target}"


@dataclass(frozen=True)
class Scorecard:
    source: str
    rules: list[RuleState]

    @property
    def broken_required(self) -> list[RuleState]:
        return [rule for rule in self.rules if rule.required and not rule.ok]

    def line(self) -> str:
        """One compact row: ``3-2-1-1-0: copies 3/3 ✓ · kinds 1/2 ✗ · …``; required rules
        are starred."""
        parts = [
            f"{rule.rule}{'*' if rule.required else ''} {rule.shown} {'✓' if rule.ok else '✗'}"
            for rule in self.rules
        ]
        return "3-2-1-1-0: " + " · ".join(parts)


def scorecard(
    profile: HostProfile,
    source: SourceFreshness,
    proof: Proof,
    now: datetime,
    deadline: Deadline | None = None,
) -> Scorecard:
    """The five rules for one source, from its freshness and what the history proves (a
    deadline notes when a proof or a new site's grace would run out)."""
    placed = profile.sources[source.source]
    sites = profile.sites
    copies = [site.site for site in source.sites if site.counts]
    kinds = {sites[name].kind for name in copies if name in sites}
    # A profile recorded by an older daemon does not say: unknown, not one kind per site.
    kinds_known = None not in kinds and all(name in sites for name in copies)
    offsite = [name for name in copies if _at(sites, name, "offsite")] if profile.located else None
    immutable = [name for name in copies if proven_immutable(profile, proof, name, now, deadline)]
    errors = {
        name: why
        for name in placed.sites
        if (why := _unverified(profile, source.source, name, proof, now, deadline)) is not None
    }

    def state(rule: Rule, count: int | None, detail: str) -> RuleState:
        return RuleState(rule, count, TARGETS[rule], rule in placed.require, detail)

    return Scorecard(
        source.source,
        [
            state("copies", len(copies), ", ".join(copies) or "no fresh copy"),
            state(
                "kinds",
                len(kinds) if kinds_known else None,
                ", ".join(sorted(str(kind) for kind in kinds)) if kinds_known else "unknown",
            ),
            state(
                "offsite",
                None if offsite is None else len(offsite),
                "this host's location is not set"
                if offsite is None
                else ", ".join(offsite) or "every copy is in this host's datacenter",
            ),
            state(
                "immutable",
                len(immutable),
                ", ".join(immutable)
                or (
                    "no site is proven to refuse deletes"
                    if any(_at(sites, name, "append_only") for name in placed.sites)
                    else "no site is declared append_only"
                ),
            ),
            state("verified", len(errors), "; ".join(f"{k}: {v}" for k, v in errors.items())),
        ],
    )


def proven_immutable(
    profile: HostProfile,
    proof: Proof,
    site: str,
    now: datetime,
    deadline: Deadline | None = None,
) -> bool:
    """The site is declared append_only, and its newest immutability proof saw it refuse a
    delete, recently enough (an old proof stops counting when proofs stop)."""
    at = profile.sites.get(site)
    run = proof.immutable.get(site)
    if at is None or not at.append_only or run is None or run.status != Status.SUCCESS:
        return False
    interval = at.immutability_interval_seconds
    if interval is None:
        return True
    return within(now, run.started_at, window(interval), inclusive=True, deadline=deadline)


def proven_mutable(profile: HostProfile, proof: Proof, site: str) -> bool:
    """The site is declared append_only, and the newest proof that reached a verdict saw it
    delete (NotImmutable). Undeclared, it is no promise broken."""
    at = profile.sites.get(site)
    run = proof.immutable.get(site)
    return at is not None and at.append_only and run is not None and run.status == Status.FAILED


def _at(sites: Mapping[str, SiteProfile], name: str, field: str) -> bool:
    return bool(getattr(sites.get(name), field, False))


def _unverified(
    profile: HostProfile,
    source: str,
    site: str,
    proof: Proof,
    now: datetime,
    deadline: Deadline | None,
) -> str | None:
    """Why the site's data is not verified for the source (None: it is)."""
    at = profile.sites.get(site)
    if site in proof.lost:
        return "lost"
    for kind, interval, run in (
        ("check", at.check_interval_seconds if at else None, proof.checks.get(site)),
        ("drill", at.drill_interval_seconds if at else None, proof.drills.get((source, site))),
    ):
        if interval is None:
            return f"no {kind}_schedule"
        if run is None:
            # As the stale alerts: due a window after the site's first backup of the source.
            began = proof.first_success.get((source, site))
            if began is None or within(
                now, began, window(interval), inclusive=True, deadline=deadline
            ):
                continue
            return f"never a {kind}"
        if run.status != Status.SUCCESS:
            return f"the newest {kind} failed ({run.error_class})"
        if not within(now, run.started_at, window(interval), inclusive=True, deadline=deadline):
            return f"no passing {kind} for {window(interval) / DAY:.0f} days"
    return None
