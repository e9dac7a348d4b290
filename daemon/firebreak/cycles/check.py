"""``restic check`` at a site, reading a rotating 1/N of the pack data each time."""

from __future__ import annotations

import logging
import os
import threading

from firebreak.config.references import UnresolvedReference
from firebreak.cycles.locks import site_lock
from firebreak.cycles.runtime import Runtime
from firebreak.history.models import Run, Status
from firebreak.history.records import RunOutcome, finish_run, finished_runs, start_run
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from firebreak.restic.errors import Interrupted, classify

log = logging.getLogger(__name__)


def next_subset(rt: Runtime, site: str) -> tuple[int, int]:
    """(n, N): the part after the one the last finished check at this site read."""
    total = rt.config.sites[site].check_read_data_subsets
    return finished_runs(rt.engine, site, "check") % total + 1, total


def check_site(
    rt: Runtime, source: str, site_name: str, cancel: threading.Event | None = None
) -> Run:
    """Check the repository at one site (recorded under the source that asked)."""
    site = rt.config.sites[site_name]
    with site_lock(rt.locks_dir, site_name, f"check for {source}", cancel), rt.run_slots:
        subset = next_subset(rt, site_name)
        run_id = start_run(
            rt.engine,
            source=source,
            site=site_name,
            operation="check",
            host=rt.host,
            restic_version=str(rt.restic_version),
            pid=os.getpid(),
        )
        try:
            access = resolve_site(site_name, site)
        except UnresolvedReference as exc:
            outcome = RunOutcome(Status.FAILED, error_class="ConfigError", error_message=str(exc))
            return finish_run(rt.engine, run_id, outcome)
        log.info("checking %s, reading data subset %d/%d", site_name, *subset)
        result = runner.run(
            commands.check(rt.restic_binary, access, rt.cache_dir, os.environ, subset=subset),
            timeout=site.timeout.total_seconds(),
            cancel=cancel,
            kill_grace=rt.kill_grace,
        )
        error = classify(result)
        if error is None:
            outcome = RunOutcome(Status.SUCCESS, exit_code=0)
        else:
            status = Status.INTERRUPTED if isinstance(error, Interrupted) else Status.FAILED
            message = error.message
            if error.error_class == "ResticFailed":
                message = _check_problem(result.stdout_lines) or message
            outcome = RunOutcome(
                status,
                exit_code=result.exit_code,
                error_class="CheckFailed"
                if error.error_class == "ResticFailed"
                else error.error_class,
                error_message=message,
            )
        return finish_run(rt.engine, run_id, outcome)


def _check_problem(lines: list[str]) -> str | None:
    """restic check prints what it found on stdout; keep the first finding."""
    for line in lines:
        lowered = line.lower()
        if "error" in lowered or "hash does not match" in lowered or "not found" in lowered:
            return line.strip()
    return None
