"""``restic check`` at a site, reading a rotating 1/N of the pack data each time."""

from __future__ import annotations

import logging
import os
import threading

from firebreak.cycles.operation import at_site, failure, run_restic
from firebreak.cycles.runtime import RunLog, Runtime
from firebreak.history.models import Run, Status
from firebreak.history.records import RunOutcome, finished_runs
from firebreak.restic import commands
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify

log = logging.getLogger(__name__)


def next_subset(rt: Runtime, site: str) -> tuple[int, int]:
    """(n, N): the part after the one the last finished check at this site read."""
    total = rt.config.sites[site].check_read_data_subsets
    return finished_runs(rt.engine, site, "check") % total + 1, total


def check_site(
    rt: Runtime, source: str, site_name: str, cancel: threading.Event | None = None
) -> Run:
    """Check the repository at one site (recorded under the source that asked)."""

    def check(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        subset = next_subset(rt, site_name)
        run_log.info("checking, reading data subset %d/%d", *subset)
        invocation = commands.check(
            rt.restic_binary, access, rt.cache_dir, os.environ, subset=subset
        )
        result = run_restic(rt, invocation, access, cancel)
        error = classify(result)
        if error is None:
            return RunOutcome(Status.SUCCESS, exit_code=0)
        if error.error_class != "ResticFailed":
            return failure(error, result.exit_code)
        # restic found something wrong with the repository's data.
        message = _check_problem(result.stdout_lines) or error.message
        return RunOutcome(Status.FAILED, exit_code=result.exit_code,
                          error_class="CheckFailed", error_message=message)  # fmt: skip

    return at_site(rt, source, site_name, "check", check, cancel=cancel)


def _check_problem(lines: list[str]) -> str | None:
    """restic check prints what it found on stdout; keep the first finding."""
    for line in lines:
        lowered = line.lower()
        if "error" in lowered or "hash does not match" in lowered or "not found" in lowered:
            return line.strip()
    return None
