"""A fleet: hosts recording into one history, each known by its profile.

A host's profile is what its metrics need from its config, and nothing else: each source's
objective and placement verdict, each site's check and drill intervals and repository (its
location, credentials removed). The daemon computes it from its config for its own scrapes,
and records it with each heartbeat (history/hosts.py), so a fleet exporter judges every host's
freshness from the shared history without its config, its secrets or its sites, and keeps
judging a host that went silent: its sites go stale as time passes.

Profiles also say which hosts share a repository (**peers**): a check of it proves it for all
of them, and it is pruned once per schedule, whoever does it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from firebreak.config.model import Config
from firebreak.config.schedules import parse_schedule
from firebreak.daemon.schedules import period
from firebreak.history.coordination import shared
from firebreak.history.freshness import Objective
from firebreak.history.hosts import hosts
from firebreak.placement.policy import effective_policy, offsite, storage_kind
from firebreak.placement.targets import location, site_target
from firebreak.placement.whatif import degradation, worst_case_survivors


@dataclass(frozen=True)
class SourceProfile:
    sites: list[str]
    max_age_seconds: float
    required_fresh_sites: int
    placement_degraded: bool = False
    # Per failure domain, the fewest sites left after losing any one value of it.
    worst_case: dict[str, int] = field(default_factory=dict)
    # The parts of 3-2-1-1-0 its policy requires (scorecard.py).
    require: list[str] = field(default_factory=list)

    @property
    def objective(self) -> Objective:
        return Objective(tuple(self.sites), self.max_age_seconds, self.required_fresh_sites)


@dataclass(frozen=True)
class SiteProfile:
    # How far apart its checks and drills are around now (None: not scheduled there).
    check_interval_seconds: float | None = None
    drill_interval_seconds: float | None = None
    # Where its repository is (placement/targets.py: normalised, no credentials).
    repository: str | None = None
    # Its kind of storage: backend and provider (scorecard.py).
    kind: str | None = None
    # Outside the host's datacenter (None: the host's location is not set, or a distance
    # the policy asks for cannot be told).
    offsite: bool | None = None
    append_only: bool = False
    # How far apart its immutability proofs are (None: not declared append_only, or not
    # scheduled).
    immutability_interval_seconds: float | None = None


@dataclass(frozen=True)
class HostProfile:
    sources: dict[str, SourceProfile]
    sites: dict[str, SiteProfile]
    # The config says where the host is (location:): offsite copies can be counted.
    located: bool = False

    @classmethod
    def of(cls, config: Config, now: datetime) -> HostProfile:
        zone = ZoneInfo(config.timezone)

        def interval(text: str | None) -> float | None:
            if text is None:
                return None
            return period(parse_schedule(text), now, zone).total_seconds()

        return cls(
            sources={
                name: SourceProfile(
                    sites=list(source.sites),
                    max_age_seconds=source.max_age.total_seconds(),
                    required_fresh_sites=source.required_fresh_sites,
                    placement_degraded=degradation(config, name) is not None,
                    worst_case={
                        str(domain): left
                        for domain, left in worst_case_survivors(config, name).items()
                    },
                    require=list(effective_policy(config, name).require),
                )
                for name, source in config.sources.items()
            },
            sites={
                name: SiteProfile(
                    interval(site.check_schedule),
                    interval(site.drill_schedule),
                    location(site_target(site), config.host_name),
                    kind=storage_kind(site),
                    offsite=None
                    if config.location is None
                    else offsite(config.location, site.location, config.placement.offsite_km),
                    append_only=site.append_only,
                    immutability_interval_seconds=interval(site.immutability_schedule)
                    if site.append_only
                    else None,
                )
                for name, site in config.sites.items()
            },
            located=config.location is not None,
        )

    def repositories(self) -> dict[str, str]:
        """Each site's repository, as peers are matched by it."""
        return {name: site.repository for name, site in self.sites.items() if site.repository}

    def objectives(self) -> dict[str, Objective]:
        return {name: source.objective for name, source in self.sources.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> HostProfile:
        """A recorded profile; raises ValueError when it is not one (a newer firebreak's
        fields are ignored, missing optional ones take their defaults)."""
        try:
            data: Any = json.loads(text)
            return cls(
                sources={
                    name: SourceProfile(
                        sites=[str(site) for site in source["sites"]],
                        max_age_seconds=float(source["max_age_seconds"]),
                        required_fresh_sites=int(source["required_fresh_sites"]),
                        placement_degraded=bool(source.get("placement_degraded", False)),
                        worst_case={
                            str(k): int(v) for k, v in source.get("worst_case", {}).items()
                        },
                        require=[str(rule) for rule in source.get("require", [])],
                    )
                    for name, source in data["sources"].items()
                },
                sites={
                    name: SiteProfile(
                        _number(site.get("check_interval_seconds")),
                        _number(site.get("drill_interval_seconds")),
                        None if site.get("repository") is None else str(site["repository"]),
                        kind=None if site.get("kind") is None else str(site["kind"]),
                        offsite=None if site.get("offsite") is None else bool(site["offsite"]),
                        append_only=bool(site.get("append_only", False)),
                        immutability_interval_seconds=_number(
                            site.get("immutability_interval_seconds")
                        ),
                    )
                    for name, site in data["sites"].items()
                },
                located=bool(data.get("located", False)),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a host profile: {exc}") from None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


# Another host's site at the same repository: (host, site).
Peer = tuple[str, str]


def peers(engine: Engine, host: str, repositories: dict[str, str]) -> dict[str, list[Peer]]:
    """Per site of this host (site → its repository), the other hosts' sites at the same
    repository, as their daemons last recorded them. Empty where the history is not shared
    (SQLite: one host)."""
    if not shared(engine):
        return {}
    # Only the hosts whose recorded profile names one of these repositories are read (a
    # scrape of a daemon in a fleet of thousands parses a few profiles, not all).
    written = {json.dumps(where, ensure_ascii=False)[1:-1] for where in repositories.values()}
    profiles = recorded_profiles(engine, mentioning=written)
    profiles[host] = HostProfile(
        {}, {name: SiteProfile(repository=r) for name, r in repositories.items()}
    )
    return fleet_peers(profiles).get(host, {})


def recorded_profiles(engine: Engine, mentioning: set[str] | None = None) -> dict[str, HostProfile]:
    """Every host's profile as its daemon last recorded it (unreadable ones left out: their
    heartbeat says so); mentioning: only those whose text names one of these."""
    profiles = {}
    for other in hosts(engine):
        if mentioning is not None and not any(text in other.profile for text in mentioning):
            continue
        try:
            profiles[other.host] = HostProfile.from_json(other.profile)
        except ValueError:
            continue
    return profiles


def fleet_peers(profiles: dict[str, HostProfile]) -> dict[str, dict[str, list[Peer]]]:
    """Per host, per site, the other hosts' sites at the same repository."""
    at: dict[str, list[Peer]] = {}
    for host, profile in profiles.items():
        for name, site in profile.sites.items():
            if site.repository:
                at.setdefault(site.repository, []).append((host, name))
    found: dict[str, dict[str, list[Peer]]] = {}
    for sites in at.values():
        for host, name in sites:
            others = sorted(peer for peer in sites if peer[0] != host)
            if others:
                found.setdefault(host, {})[name] = others
    return found


def repositories(config: Config, host: str | None = None) -> dict[str, str]:
    """Each site's repository, as peers are matched by it (a local path is one host's)."""
    host = host or config.host_name
    return {name: location(site_target(site), host) for name, site in config.sites.items()}
