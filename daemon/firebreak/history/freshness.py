"""Freshness: is each site's last success younger than the source's max_age, and is the
source safe (at least min_fresh_sites fresh)? Computed from recorded runs, never from restic.

A backup counts only if it can be restored: a site whose newest restore drill or restic check
found its data bad is **damaged** and does not count toward safety, however fresh, until a
later run of the kind that failed passes (a drill after a failed drill, a check after a failed
check). A drill or check that could not reach the site, or could not write its scratch copy,
proves nothing either way and changes nothing.

A site whose repository is gone, or replaced by another, is **lost** (actions/identity.py) and
does not count either, however fresh its last success, until the repository comes back or an
operator resets the site.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from firebreak.clock import Deadline, within
from firebreak.config.model import Config
from firebreak.history.latest import Latest, Peers, SeriesState, peer_hosts
from firebreak.history.models import Run
from firebreak.humanize import humanize_age
from firebreak.outcomes import Operation, Status


@dataclass(frozen=True)
class Proof:
    """The newest restore drill and restic check that judged each site's data."""

    # (source, site) → the newest drill that passed or found the data bad.
    drills: dict[tuple[str, str], Run]
    # site → the newest check of its repository that passed or found it bad, whichever
    # source it was recorded under (a check covers the whole repository).
    checks: dict[str, Run]
    # (source, site) → the newest drill and the newest passing one, whatever they found.
    drill_runs: dict[tuple[str, str], Latest]
    # site → the run that found its repository gone or replaced, while it still is.
    lost: dict[str, Run] = field(default_factory=dict)
    # Whose proof it is (a check another host ran at a shared repository says by whom).
    host: str | None = None
    # site → the newest immutability proof that reached a verdict: refused, or deleted.
    immutable: dict[str, Run] = field(default_factory=dict)
    # (source, site) → when the oldest recorded successful backup there started.
    first_success: dict[tuple[str, str], datetime] = field(default_factory=dict)

    @classmethod
    def read(cls, engine: Engine, host: str, peers: Peers | None = None) -> Proof:
        """What the history proves of this host's sources and sites (a check by a peer, a
        host sharing the repository, proves it too)."""
        return cls.of(SeriesState.read(engine, peer_hosts(host, peers)), host, peers)

    @classmethod
    def of(cls, state: SeriesState, host: str, peers: Peers | None = None) -> Proof:
        """Proof.read from a state already read (of the host and its peers)."""
        return cls(
            drills=state.verdicts(host, Operation.DRILL),
            checks=state.site_verdicts(host, Operation.CHECK, peers),
            drill_runs=state.latest(host, Operation.DRILL),
            lost=state.lost(host),
            host=host,
            immutable=state.site_verdicts(host, Operation.IMMUTABILITY),
            first_success=state.first_successes(host),
        )

    def loss(self, site: str, now: datetime) -> str | None:
        """Why the site's repository is not the one it held, or None."""
        run = self.lost.get(site)
        if run is None:
            return None
        age = humanize_age((now - run.started_at).total_seconds())
        return f"found {age} ago: {run.error_class}: {run.error_message or ''}"

    def drill_passed(self, source: str, site: str) -> datetime | None:
        """When the newest passing drill of the source at the site started."""
        entry = self.drill_runs.get((source, site))
        return entry.last_success.started_at if entry and entry.last_success else None

    def damage(self, source: str, site: str, now: datetime) -> str | None:
        """Why the site's data for this source cannot be trusted, or None."""
        for what, run in (
            ("restore drill", self.drills.get((source, site))),
            ("restic check", self.checks.get(site)),
        ):
            if run is not None and run.status == Status.FAILED:
                age = humanize_age((now - run.started_at).total_seconds())
                by = f" (by {run.host})" if self.host and run.host != self.host else ""
                return f"{what} failed {age} ago{by}: {run.error_class}: {run.error_message or ''}"
        return None


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
    # Why the site's data is not trusted (a failed drill or check), or None.
    damaged: str | None = None
    last_drill_success_at: datetime | None = None
    # Why the site's repository is lost (gone, or another in its place), or None.
    lost: str | None = None

    @property
    def state(self) -> str:
        """``lost``, ``damaged``, ``fresh`` or ``stale``: the worst that holds."""
        if self.lost:
            return "lost"
        if self.damaged:
            return "damaged"
        return "fresh" if self.fresh else "stale"

    @property
    def counts(self) -> bool:
        """Counts toward the source's safety: fresh, not damaged, not lost."""
        return self.fresh and self.damaged is None and self.lost is None


@dataclass(frozen=True)
class SourceFreshness:
    source: str
    max_age_seconds: float
    required_fresh_sites: int
    fresh_sites: int
    safe: bool
    sites: list[SiteFreshness]


@dataclass(frozen=True)
class Objective:
    """What a source asks: these sites, each success younger than max_age, at least
    required_fresh_sites of them fresh."""

    sites: tuple[str, ...]
    max_age_seconds: float
    required_fresh_sites: int


def objectives(config: Config) -> dict[str, Objective]:
    return {
        name: Objective(
            tuple(source.sites), source.max_age.total_seconds(), source.required_fresh_sites
        )
        for name, source in config.sources.items()
    }


def freshness(
    config: Config | Mapping[str, Objective],
    latest: dict[tuple[str, str], Latest],
    now: datetime,
    proof: Proof | None = None,
    deadline: Deadline | None = None,
) -> list[SourceFreshness]:
    """One entry per source (of the config, or of recorded objectives), its sites in
    configured order (a deadline notes when the first site would go stale)."""
    proof = proof or Proof({}, {}, {})
    report = []
    wanted = objectives(config) if isinstance(config, Config) else config
    for source_name, source in wanted.items():
        max_age = source.max_age_seconds
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
                    fresh=success_at is not None
                    and within(now, success_at, max_age, deadline=deadline),
                    last_success_at=success_at,
                    last_attempt_at=attempt.started_at if attempt else None,
                    last_outcome=attempt.status if attempt else None,
                    last_error=error,
                    snapshot_id=success.snapshot_id if success else None,
                    bytes_added=success.bytes_added if success else None,
                    age_seconds=age,
                    damaged=proof.damage(source_name, site_name, now),
                    last_drill_success_at=proof.drill_passed(source_name, site_name),
                    lost=proof.loss(site_name, now),
                )
            )
        fresh = sum(1 for site in sites if site.counts)
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
