"""What must hold before the daemon says READY=1, and what a reload must pass: the config,
the placement policy, restic and the database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from firebreak.actions.runtime import Runtime, open_runtime
from firebreak.config import Config, ConfigError, load_config
from firebreak.history.database import DatabaseError
from firebreak.history.unwritten import Unwritten
from firebreak.humanize import plural
from firebreak.outcomes import ResticUnavailable
from firebreak.placement.check import check_placement

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The daemon cannot start; ``code`` is the exit code (docs/cli.md)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ReloadStatus:
    ok: bool
    at: datetime
    message: str = ""


def preflight(config_path: Path) -> tuple[Config, Runtime]:
    """Everything that must hold before READY=1; raises StartupError saying what does not."""
    try:
        config = load_config(config_path, check_environment=True)
    except ConfigError as exc:
        raise StartupError(exc.render(), 2) from None
    verify_placement(config)
    try:
        rt = open_runtime(config)
        rt.unwritten = Unwritten(keep_starts=True)  # cycles run through a history outage
        return config, rt
    except (ResticUnavailable, DatabaseError) as exc:
        raise StartupError(str(exc), 5) from None


def verify_placement(config: Config, *, probe_repositories: bool = True) -> None:
    """The placement policy; raises StartupError on a violation in error mode. The sites are
    asked for their repository ids only when ``probe_repositories`` (at start, before any
    run: those restic processes count toward no run slot)."""
    report = check_placement(config, probe_repositories=probe_repositories)
    for violation in report.errors:
        log.error("placement: %s", violation.message)
    if report.errors:
        raise StartupError(
            f"{plural(len(report.errors), 'placement violation')}: refusing to run "
            "(firebreak validate explains them)",
            2,
        )
    if report.warned_by_policy:
        log.warning(
            "PLACEMENT POLICY IN WARN MODE: %s — copies of these sources can be lost together",
            plural(len(report.warned_by_policy), "violation"),
        )
    for violation in report.warnings:
        log.warning("placement: %s", violation.message)
