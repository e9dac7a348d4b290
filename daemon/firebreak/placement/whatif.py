"""What survives a disaster: lose a provider, region, country, datacenter or site; count
what is left."""

from __future__ import annotations

from dataclasses import dataclass

from firebreak.config.model import Config
from firebreak.config.placement import FAILURE_DOMAINS, FailureDomain
from firebreak.placement.policy import effective_policy, same_label

LOSS_KEYS: tuple[str, ...] = (*FAILURE_DOMAINS, "site")


@dataclass(frozen=True)
class Loss:
    """One thing destroyed: ``provider=ovh``, ``datacenter=SBG2``, ``site=gra`` ..."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Loss:
        key, sep, value = text.partition("=")
        key = key.strip().lower()
        if not sep or not value.strip():
            raise ValueError(f"{text!r}: write it as attribute=value, such as provider=ovh")
        if key not in LOSS_KEYS:
            raise ValueError(f"{text!r}: {key!r} is not one of {', '.join(LOSS_KEYS)}")
        return cls(key, value.strip())

    def __str__(self) -> str:
        return f"{self.key}={self.value}"

    def unknown(self, config: Config) -> str | None:
        """Why this loss names nothing in the config (a typo would look like 'safe'), or None."""
        if self.key == "site":
            known = sorted(config.sites)
        else:
            known = sorted({getattr(s.location, self.key) for s in config.sites.values()})
        if any(self.hits(config, name) for name in config.sites):
            return None
        host = config.location
        if (
            self.key != "site"
            and host is not None
            and same_label(getattr(host, self.key), self.value)
        ):
            return None  # this host's own place: it may hold no copy, and that is the point
        plural = "sites" if self.key == "site" else f"{self.key}s"
        return f"no site has {self} ({plural} in the config: {', '.join(known)})"

    def hits(self, config: Config, site_name: str) -> bool:
        if self.key == "site":
            return site_name == self.value
        return same_label(getattr(config.sites[site_name].location, self.key), self.value)


@dataclass(frozen=True)
class Outcome:
    source: str
    lost: tuple[str, ...]
    surviving: tuple[str, ...]
    required: int

    @property
    def safe(self) -> bool:
        return len(self.surviving) >= self.required


def outcome(config: Config, source_name: str, losses: list[Loss]) -> Outcome:
    source = config.sources[source_name]
    lost = tuple(name for name in source.sites if any(loss.hits(config, name) for loss in losses))
    surviving = tuple(name for name in source.sites if name not in lost)
    return Outcome(source_name, lost, surviving, source.required_fresh_sites)


def simulate(config: Config, losses: list[Loss]) -> list[Outcome]:
    """Every source after the losses: which of its sites are left, and is that enough?"""
    return [outcome(config, name, losses) for name in config.sources]


@dataclass(frozen=True)
class WhatIfRow:
    domain: FailureDomain
    value: str
    outcome: Outcome
    # This host is there too: the loss takes the data itself, and only the copies are left.
    host: bool = False


def what_if(config: Config, source_name: str) -> list[WhatIfRow]:
    """For each provider, region, country and datacenter among the source's sites, and the
    host's own datacenter when its location is set: its loss."""
    rows = []
    host = config.location
    for domain in FAILURE_DOMAINS:
        values: dict[str, str] = {}
        for name in config.sources[source_name].sites:
            value = getattr(config.sites[name].location, domain)
            values.setdefault(value.strip().casefold(), value)
        if domain == "datacenter" and host is not None:
            values.setdefault(host.datacenter.strip().casefold(), host.datacenter)
        for value in values.values():
            here = host is not None and same_label(getattr(host, domain), value)
            loss = outcome(config, source_name, [Loss(domain, value)])
            rows.append(WhatIfRow(domain, value, loss, host=here))
    return rows


@dataclass(frozen=True)
class Degradation:
    """Why a source's placement is degraded: one loss the policy says it must survive would
    leave it fewer sites than min_fresh_sites."""

    loss: Loss
    outcome: Outcome

    def __str__(self) -> str:
        left = len(self.outcome.surviving)
        return (
            f"losing {self.loss} would leave {left} site{'s' if left != 1 else ''} "
            f"({', '.join(self.outcome.surviving) or 'none'}), "
            f"and min_fresh_sites is {self.outcome.required}"
        )


def required_domains(config: Config, source_name: str) -> tuple[FailureDomain, ...]:
    """The failure domains the source must survive the loss of one of: those its policy
    keeps distinct (datacenter always)."""
    return effective_policy(config, source_name).distinct


def degradation(config: Config, source_name: str) -> Degradation | None:
    """The placement verdict that placement, status, the metrics and the alert all share:
    the source is **degraded** when losing any one datacenter (or any one value of another
    domain its policy keeps distinct) would leave fewer sites than min_fresh_sites. None:
    it holds."""
    required = required_domains(config, source_name)
    for row in what_if(config, source_name):
        if row.domain in required and not row.outcome.safe:
            return Degradation(Loss(row.domain, row.value), row.outcome)
    return None


def worst_case_survivors(config: Config, source_name: str) -> dict[FailureDomain, int]:
    """Per failure domain, the fewest sites left after losing any one value of it (the
    number the metrics collector exports)."""
    worst: dict[FailureDomain, int] = {}
    for row in what_if(config, source_name):
        left = len(row.outcome.surviving)
        worst[row.domain] = min(worst.get(row.domain, left), left)
    return worst
