"""Asking one site one question (snapshots, its repository id): resolve, build, run, classify.

Failures of any kind come back as a Failure on the answer, never as an exception, so a
caller asking many sites at once gets one answer per site.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from firebreak.config.model import Config
from firebreak.config.references import UnresolvedReference
from firebreak.outcomes import Failure, ResticUnavailable, SiteConfigError
from firebreak.restic import runner
from firebreak.restic.access import resolve_site
from firebreak.restic.commands import SiteRestic
from firebreak.restic.errors import classify
from firebreak.restic.result import ResticResult

# A question only reads: restic needs no long grace to leave a clean lock behind.
ASK_KILL_GRACE = 5.0


@dataclass(frozen=True)
class Answer:
    result: ResticResult | None
    error: Failure | None

    @property
    def problem(self) -> str | None:
        """``Class: message`` for a person, or None when restic succeeded."""
        return None if self.error is None else f"{self.error.error_class}: {self.error.message}"


def ask_site(
    config: Config,
    name: str,
    build: Callable[[SiteRestic], runner.Invocation],
    *,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> Answer:
    """Within the site's stall_timeout, its timeout (or a shorter one), and until cancel."""
    try:
        access = resolve_site(name, config.sites[name])
    except UnresolvedReference as exc:
        return Answer(None, SiteConfigError(f"sites.{name}: {exc}"))
    try:
        site = config.sites[name]
        result = runner.run(
            build(SiteRestic.of(config, access, os.environ)),
            timeout=min(timeout or math.inf, site.timeout.total_seconds()),
            stall_timeout=site.stall_timeout.total_seconds(),
            cancel=cancel,
            kill_grace=ASK_KILL_GRACE,
        )
    except ResticUnavailable as exc:
        return Answer(None, exc)
    return Answer(result, classify(result))
