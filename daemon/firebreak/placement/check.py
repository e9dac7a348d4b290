"""The whole placement check: rules on labels, then the physical checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from firebreak.config.model import Config
from firebreak.placement.physical import (
    HostLookups,
    Note,
    physical_violations,
    probe_repository_ids,
)
from firebreak.placement.policy import ADVISORY, Violation, label_violations
from firebreak.placement.targets import site_target


@dataclass
class PlacementReport:
    violations: list[Violation] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warn"]

    @property
    def warned_by_policy(self) -> list[Violation]:
        """The warnings that would be errors but for ``enforce: warn`` (the others, such as a
        label that contradicts its endpoint, are warnings whatever the policy says)."""
        return [v for v in self.warnings if v.rule not in ADVISORY]

    def lines(self, where: object) -> list[tuple[bool, str]]:
        """What validate and backup print of it, for the config file where: violations
        (True: for stderr), warnings loudly, notes quietly."""
        lines = [(True, f"{where}: placement: {violation.message}") for violation in self.errors]
        if self.warned_by_policy:
            lines.append(
                (
                    False,
                    f"{where}: WARNING: placement policy is in warn mode — these copies can be "
                    "lost together, and firebreak carries on only because enforce: warn says so:",
                )
            )
        lines += [(False, f"{where}: WARNING: placement: {v.message}") for v in self.warnings]
        for note in self.notes:
            about = f"sites.{note.site}: " if note.site else ""
            lines.append((False, f"{where}: note: {about}{note.message}"))
        return lines


def check_placement(
    config: Config,
    *,
    sources: list[str] | None = None,
    resolve_hosts: bool = True,
    probe_repositories: bool = True,
    lookups: HostLookups | None = None,
) -> PlacementReport:
    """Every violation of every source's placement policy.

    ``resolve_hosts`` looks host names up (short timeout; a failure is a note, never an
    error); ``probe_repositories`` asks each site for its restic repository id. Without
    both (``--offline``), only what this machine can see without the network is checked.
    """
    names = sources if sources is not None else list(config.sources)
    used = {site for name in names for site in config.sources[name].sites}
    report = PlacementReport()
    repository_ids: dict[str, str] = {}
    if probe_repositories:
        repository_ids, notes = probe_repository_ids(config, used)
        report.notes += notes
    own_lookups = None
    if resolve_hosts:
        if lookups is None:
            lookups = own_lookups = HostLookups()
        lookups.start(
            t.host for t in (site_target(config.sites[s]) for s in used) if t.host and not t.alias
        )
    try:
        for name in names:
            report.violations += label_violations(config, name)
            violations, notes = physical_violations(
                config, name, lookups if resolve_hosts else None, repository_ids
            )
            report.violations += violations
            report.notes += notes
    finally:
        if own_lookups is not None:
            own_lookups.close()
    return report
