"""``restic check`` at a site, reading a rotating 1/N of the pack data each time."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from firebreak.actions.locks import done_at_repository, repository_turn, when
from firebreak.actions.operation import at_site, run_restic
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.history.coordination import RepositoryBusy
from firebreak.history.latest import finished_runs
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome
from firebreak.outcomes import CheckFailed, Failure, Operation, Status
from firebreak.restic import commands
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import check_summary
from firebreak.restic.result import ResticResult

log = logging.getLogger(__name__)


def next_subset(rt: Runtime, site: str) -> tuple[int, int]:
    """(n, N): the part after the one the last finished check at this site read."""
    total = rt.config.sites[site].check_read_data_subsets
    return finished_runs(rt.engine, site, Operation.CHECK, host=rt.host) % total + 1, total


def check_site(
    rt: Runtime,
    site_name: str,
    cancel: threading.Event | None = None,
    *,
    read_all_data: bool = False,
    done_since: datetime | None = None,
) -> Run:
    """Check the repository at one site: its structure, and the next 1/N of its pack data (or
    all of it). Recorded for the site: the repository is every source's.

    Hosts sharing the repository check it one at a time (history/coordination.py). done_since
    (a scheduled check): skipped when another host holds the repository, or when a check that
    reached a verdict there started since then, by any of them: it proves the repository for
    all (history/freshness.py counts it). Without it (someone asked), the check waits its turn.
    """

    def check(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        try:
            patience = None if done_since is None else 0
            with repository_turn(rt, site_name, "check", patience=patience, cancel=cancel):
                if done_since is not None:
                    done = done_at_repository(
                        rt, site_name, Operation.CHECK, done_since, verdict=True
                    )
                    if done is not None:
                        message = f"checked by {when(done)} ({done.status})"
                        run_log.info("skipped: %s", message)
                        return RunOutcome(Status.SKIPPED, error_message=message)
                return checked(access, run_log)
        except RepositoryBusy as busy:
            run_log.info("skipped: %s", busy)
            return RunOutcome(Status.SKIPPED, error_message=str(busy))

    def checked(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        subset = None if read_all_data else next_subset(rt, site_name)
        if subset is None:
            run_log.info("checking, reading all data")
        else:
            run_log.info("checking, reading data subset %d/%d", *subset)
        invocation = commands.check(rt.restic_at(access), subset=subset, read_all=read_all_data)
        result = run_restic(rt, invocation, access, cancel)
        error = classify(result)
        if error is None:
            return RunOutcome(Status.SUCCESS, exit_code=0)
        return RunOutcome.failed(check_verdict(result, error), result.exit_code)

    return at_site(rt, None, site_name, Operation.CHECK, check, cancel=cancel)


def check_verdict(result: ResticResult, error: Failure) -> Failure:
    """What a failed check stands for: CheckFailed, saying what restic found, when it found
    the data damaged; otherwise restic could not finish the check (the site, a lock, a
    timeout), which is no verdict on the data and does not make the site damaged."""
    said = result.stderr_lines()
    # Only restic's verdict: 0.18 and later also count one "error" when they could not even
    # lock the repository (exit 11), which says nothing about the data.
    if not any(VERDICT in line for line in said):
        return error
    counted = check_summary(result)  # restic 0.18 and later count what they found
    message = _check_problem([*said, *result.stdout_lines]) or error.message
    if counted is not None and counted.num_errors:
        packs = ", ".join(pack[:8] for pack in counted.broken_packs or ())
        damaged = f"; damaged packs: {packs}" if packs else ""
        message = f"{message} ({counted.num_errors} errors{damaged})"
    return CheckFailed(message)


# What restic check ends with when it found the data damaged (0.14 through current).
VERDICT = "repository contains errors"


def _check_problem(lines: list[str]) -> str | None:
    """The first thing restic check found (it prints its findings, then its verdict), with
    its detail when that is on the next line ("error for tree 0a5dd7c8:" then why)."""
    for number, line in enumerate(lines):
        lowered = line.lower()
        if VERDICT in lowered:
            continue
        if any(sign in lowered for sign in ("error", "does not match", "not found", "failed")):
            finding = line.strip()
            if finding.endswith(":") and number + 1 < len(lines):
                finding = f"{finding} {lines[number + 1].strip()}"
            return finding
    return None
