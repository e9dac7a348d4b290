"""The placement rules that read only the config: site count, distinct locations, distance."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from firebreak.config.model import Config, Location, Site
from firebreak.config.placement import FAILURE_DOMAINS, RULES, FailureDomain, Rule
from firebreak.placement.endpoints import endpoint_problems
from firebreak.placement.geo import distance_km
from firebreak.placement.targets import site_target

Severity = Literal["error", "warn"]
# Rules whose violations are warnings whatever enforce says.
ADVISORY = frozenset({"endpoint_location"})

_PLACE = {
    "datacenter": 'in datacenter "{value}"',
    "provider": 'run by provider "{value}"',
    "region": 'in region "{value}"',
    "country": 'in country "{value}"',
}
_CONSEQUENCE = {
    "datacenter": "one fire there destroys both",
    "provider": "one provider's outage, bankruptcy or account lock-out takes both",
    "region": "one regional disaster or outage takes both",
    "country": "one country's disaster, grid failure or legal order reaches both",
}


@dataclass(frozen=True)
class Violation:
    """A way a source's copies could be lost together, in an operator's words."""

    source: str
    rule: str
    sites: tuple[str, ...]
    message: str
    severity: Severity


@dataclass(frozen=True)
class EffectivePolicy:
    """The global policy tightened by the source's own additions."""

    min_sites: int
    distinct: tuple[FailureDomain, ...]
    min_distance_km: float | None
    enforce: Severity
    min_offsite: int = 0
    offsite_km: float | None = None
    require: tuple[Rule, ...] = ()


def effective_policy(config: Config, source_name: str) -> EffectivePolicy:
    base = config.placement
    mine = config.sources[source_name].placement
    wanted = {"datacenter", *base.distinct, *mine.distinct}
    distances = [d for d in (base.min_distance_km, mine.min_distance_km) if d is not None]
    return EffectivePolicy(
        min_sites=max(base.min_sites, mine.min_sites or 0),
        distinct=tuple(domain for domain in FAILURE_DOMAINS[::-1] if domain in wanted),
        min_distance_km=max(distances) if distances else None,
        enforce="error" if "error" in (base.enforce, mine.enforce) else "warn",
        min_offsite=max(base.min_offsite, mine.min_offsite or 0),
        offsite_km=base.offsite_km,
        require=tuple(rule for rule in RULES if rule in {*base.require, *mine.require}),
    )


def same_label(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def label_violations(config: Config, source_name: str) -> list[Violation]:
    """Count, distinct location fields and distance: nothing here touches the machine."""
    policy = effective_policy(config, source_name)
    source = config.sources[source_name]
    sites = {name: config.sites[name].location for name in source.sites}
    found: list[Violation] = []

    def violation(rule: str, names: tuple[str, ...], message: str) -> None:
        found.append(Violation(source_name, rule, names, message, policy.enforce))

    if len(sites) < policy.min_sites:
        violation(
            "min_sites",
            tuple(sites),
            f'source "{source_name}" has {len(sites)} site{"s" if len(sites) != 1 else ""}; '
            f"the placement policy needs at least {policy.min_sites} in distinct places",
        )
    for (name_a, a), (name_b, b) in itertools.combinations(sites.items(), 2):
        for domain in policy.distinct:
            value_a, value_b = getattr(a, domain), getattr(b, domain)
            if same_label(value_a, value_b):
                violation(
                    f"distinct_{domain}",
                    (name_a, name_b),
                    f'source "{source_name}": sites "{name_a}" and "{name_b}" are both '
                    f"{_PLACE[domain].format(value=value_a)} — {_CONSEQUENCE[domain]}",
                )
    if policy.min_distance_km is not None:
        found += _distance_violations(source_name, policy, sites)
    if config.location is not None and policy.min_offsite > 0:
        found += _offsite_violations(source_name, policy, config.location, sites)
    for name in source.sites:
        contradiction = endpoint_problems(config, name, site_target(config.sites[name]).host)
        if contradiction is not None:
            # Always a warning: the table may lag a provider's new names, and a stale table
            # must never stop backups.
            message = f'source "{source_name}": {contradiction}'
            found.append(Violation(source_name, "endpoint_location", (name,), message, "warn"))
    for rule in policy.require:
        why = _cannot_meet(config, source_name, rule, policy)
        if why is not None:
            violation(
                f"require_{rule}",
                tuple(source.sites),
                f'source "{source_name}": the placement policy requires {rule} (3-2-1-1-0), '
                f"and {why}",
            )
    return found


def storage_kind(site: Site) -> str:
    """A site's kind of storage, for 3-2-1-1-0's "2 kinds": its backend and its provider
    (``s3/ovh``); two sites differ in kind when either differs."""
    return f"{site_target(site).backend}/{site.location.provider.strip().casefold()}"


def _cannot_meet(
    config: Config, source_name: str, rule: Rule, policy: EffectivePolicy
) -> str | None:
    """Why the config cannot meet this part of 3-2-1-1-0 whatever the runs do, or None."""
    names = config.sources[source_name].sites
    sites = {name: config.sites[name] for name in names}
    if rule == "copies" and len(sites) < 3:
        return f"3 copies need 3 sites; it has {len(sites)}"
    if rule == "kinds" and len({storage_kind(site) for site in sites.values()}) < 2:
        kind = storage_kind(next(iter(sites.values())))
        return f"2 kinds of storage need a backend or a provider of their own; every site is {kind}"
    if rule == "offsite":
        host = config.location
        if host is None:
            return "an offsite copy needs this host's location (location: in the config)"
        if not any(offsite(host, site.location, policy.offsite_km) for site in sites.values()):
            return "no site is offsite (outside this host's datacenter)"
    if rule == "immutable" and not any(site.append_only for site in sites.values()):
        return "no site is declared append_only: true (the daemon proves it refuses deletes)"
    if rule == "verified":
        unscheduled = [
            name
            for name, site in sites.items()
            if site.check_schedule is None or site.drill_schedule is None
        ]
        if unscheduled:
            return (
                "every site needs a check_schedule and a drill_schedule; "
                f"{_quoted(unscheduled)} {'has' if len(unscheduled) == 1 else 'have'} "
                "one of them null"
            )
    return None


def offsite(host: Location, site: Location, offsite_km: float | None) -> bool | None:
    """Whether a site is offsite: outside the host's datacenter, and at least offsite_km from
    it when that is set. None: offsite_km is set and a position is missing."""
    if same_label(host.datacenter, site.datacenter):
        return False
    if offsite_km is None:
        return True
    if host.lat is None or host.lon is None or site.lat is None or site.lon is None:
        return None
    return distance_km(host.lat, host.lon, site.lat, site.lon) >= offsite_km


def _offsite_violations(
    source_name: str, policy: EffectivePolicy, host: Location, sites: dict[str, Location]
) -> list[Violation]:
    verdicts = {
        name: offsite(host, location, policy.offsite_km) for name, location in sites.items()
    }
    away = [name for name, verdict in verdicts.items() if verdict]
    if len(away) >= policy.min_offsite:
        return []
    within = [name for name, verdict in verdicts.items() if verdict is False]
    unknown = [name for name, verdict in verdicts.items() if verdict is None]
    where = f'this host\'s datacenter "{host.datacenter}"'
    near = "in it"
    if policy.offsite_km is not None:
        where += f" and at least {policy.offsite_km:g} km from it"
        near = "in it or nearer"
    said = [f"{_quoted(within)} {'is' if len(within) == 1 else 'are'} {near}"] if within else []
    if unknown:
        said.append(
            f"{_quoted(unknown)} cannot count: offsite_km needs lat/lon on "
            f"{'this host and ' if host.lat is None else ''}the site"
        )
    return [
        Violation(
            source_name,
            "min_offsite",
            tuple(within + unknown),
            f'source "{source_name}" has {len(away)} site{"s" if len(away) != 1 else ""} '
            f"offsite (outside {where}); the placement policy needs at least "
            f"{policy.min_offsite}: {'; '.join(said)} — one fire there destroys this machine "
            "and every copy with it",
            policy.enforce,
        )
    ]


def _quoted(names: list[str]) -> str:
    shown = ", ".join(f'"{name}"' for name in names)
    return f"site {shown}" if len(names) == 1 else f"sites {shown}"


def _distance_violations(
    source_name: str, policy: EffectivePolicy, sites: dict[str, Location]
) -> list[Violation]:
    assert policy.min_distance_km is not None
    found = []
    placed: dict[str, tuple[float, float]] = {}
    for name, location in sites.items():
        if location.lat is None or location.lon is None:
            found.append(
                Violation(
                    source_name,
                    "min_distance",
                    (name,),
                    f'source "{source_name}": site "{name}" has no lat/lon, which '
                    f"min_distance_km ({policy.min_distance_km:g}) needs",
                    policy.enforce,
                )
            )
        else:
            placed[name] = (location.lat, location.lon)
    for (name_a, a), (name_b, b) in itertools.combinations(placed.items(), 2):
        km = distance_km(*a, *b)
        if km < policy.min_distance_km:
            found.append(
                Violation(
                    source_name,
                    "min_distance",
                    (name_a, name_b),
                    f'source "{source_name}": sites "{name_a}" and "{name_b}" are {km:.0f} km '
                    f"apart; the placement policy needs at least {policy.min_distance_km:g} km — "
                    "one flood, storm or grid failure can reach both",
                    policy.enforce,
                )
            )
    return found
