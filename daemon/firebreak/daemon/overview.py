"""What ``firebreak status`` and the status page show: every source's freshness at every
site, its placement, and when its next cycle is due. Read from the run history only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from firebreak.config import Config
from firebreak.config.schedules import Cron, parse_schedule
from firebreak.daemon.catchup import is_overdue, last_runs
from firebreak.daemon.schedules import next_fire
from firebreak.fleet import HostProfile, fleet_peers, peers, recorded_profiles, repositories
from firebreak.history.freshness import Proof, SourceFreshness, freshness
from firebreak.history.hosts import hosts
from firebreak.history.latest import SeriesState, peer_hosts
from firebreak.humanize import format_seconds, humanize_age
from firebreak.placement.whatif import degradation
from firebreak.scorecard import Scorecard, scorecard


@dataclass(frozen=True)
class NextCycle:
    # When the next cycle is due (cron only: an interval counts from the daemon's start,
    # which the history does not know).
    at: datetime | None
    overdue: bool
    text: str


@dataclass(frozen=True)
class SourceOverview:
    freshness: SourceFreshness
    # Why placement is degraded (a site lost or damaged leaves too few places), or None.
    degraded: str | None
    next_cycle: NextCycle
    # 3-2-1-1-0, as the history proves it.
    rules: Scorecard


@dataclass(frozen=True)
class Overview:
    generated_at: datetime
    sources: list[SourceOverview]

    @property
    def safe(self) -> bool:
        return all(source.freshness.safe for source in self.sources)


def overview(config: Config, engine: Engine, now: datetime, host: str | None = None) -> Overview:
    """One host's view (by default this one's, config.host_name). Raises DatabaseError (or
    a driver's error) when the history cannot be read."""
    host = host or config.host_name
    shares = peers(engine, host, repositories(config, host))
    history = SeriesState.read(engine, peer_hosts(host, shares))
    proof = Proof.of(history, host, shares)
    started = last_runs(config, engine, host)
    report = freshness(config, history.latest(host), now, proof)
    profile = HostProfile.of(config, now)
    sources = []
    for source in report:
        degraded = degradation(config, source.source)
        sources.append(
            SourceOverview(
                freshness=source,
                degraded=None if degraded is None else str(degraded),
                next_cycle=next_cycle(config, source.source, started.get(source.source), now),
                rules=scorecard(profile, source, proof, now),
            )
        )
    return Overview(now, sources)


def document(seen: Overview) -> dict[str, Any]:
    """The overview as ``firebreak status --json`` prints it, and as the daemon's control
    socket answers it (plain JSON types; times in ISO 8601)."""
    return {
        "generated_at": seen.generated_at.isoformat(),
        "sources": [_source_document(source) for source in seen.sources],
    }


def _source_document(source: SourceOverview) -> dict[str, Any]:
    data = asdict(source.freshness)
    upcoming = source.next_cycle.at
    data["next_cycle_at"] = None if upcoming is None else upcoming.isoformat()
    data["cycle_overdue"] = source.next_cycle.overdue
    data["next_cycle"] = source.next_cycle.text
    data["max_age"] = format_seconds(source.freshness.max_age_seconds)
    data["placement_degraded"] = source.degraded
    data["rules"] = {
        rule.rule: {
            "count": rule.count,
            "target": rule.target,
            "ok": rule.ok,
            "required": rule.required,
            "detail": rule.detail,
            "shown": rule.shown,
        }
        for rule in source.rules.rules
    }
    data["rules_summary"] = source.rules.line()
    for site, counted in zip(data["sites"], source.freshness.sites, strict=True):
        site["state"] = counted.state
        site["counts"] = counted.counts
        for key in ("last_success_at", "last_attempt_at", "last_drill_success_at"):
            if site[key] is not None:
                site[key] = site[key].isoformat()
    return data


def next_cycle(config: Config, source: str, last: datetime | None, now: datetime) -> NextCycle:
    """The source's next cycle, given when its last one started."""
    schedule_text = config.sources[source].schedule
    schedule = parse_schedule(schedule_text)
    zone = ZoneInfo(config.timezone)
    upcoming = next_fire(schedule, now, zone) if isinstance(schedule, Cron) else None
    overdue = is_overdue(config, source, last, now)
    ran = (
        "never ran"
        if last is None
        else f"last ran {humanize_age((now - last).total_seconds())} ago"
    )
    if overdue:
        text = f"OVERDUE ({schedule_text}; {ran}): the daemon catches up as soon as it runs"
    elif upcoming is None:
        text = f"{schedule_text}, counted from the daemon's start ({ran})"
    else:
        local = upcoming.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        text = f"in {humanize_age((upcoming - now).total_seconds())}, {local} ({schedule_text})"
    return NextCycle(upcoming, overdue, text)


@dataclass(frozen=True)
class HostOverview:
    """One host of a fleet, as its heartbeats and runs in the shared history show it."""

    host: str
    # "alive", "SILENT" (missed its heartbeats) or "stopped" (stopped on request).
    state: str
    last_seen_at: datetime
    version: str
    # Its sources judged by the objectives its daemon last recorded; None when that record
    # cannot be read (written by a newer firebreak, or damaged).
    sources: list[SourceFreshness] | None

    @property
    def safe(self) -> bool:
        return (
            self.state == "alive"
            and self.sources is not None
            and all(source.safe for source in self.sources)
        )


def fleet_overview(engine: Engine, now: datetime) -> list[HostOverview]:
    """Every host whose daemon ever recorded a heartbeat in this history, by name."""
    fleet = []
    profiles = recorded_profiles(engine)
    shares = fleet_peers(profiles)
    history = SeriesState.read(engine, profiles)
    for host in hosts(engine):
        if host.stopped_at is not None:
            state = "stopped"
        else:
            state = "SILENT" if host.silent(now) else "alive"
        profile = profiles.get(host.host)
        if profile is None:
            sources = None
        else:
            proof = Proof.of(history, host.host, shares.get(host.host))
            sources = freshness(profile.objectives(), history.latest(host.host), now, proof)
        fleet.append(HostOverview(host.host, state, host.last_seen_at, host.version, sources))
    return fleet
