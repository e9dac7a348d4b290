"""One backup run of one source at one site: record → restic → record."""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from firebreak.actions.identity import location
from firebreak.actions.locks import repository_turn
from firebreak.actions.operation import at_site, create_repository, run_restic
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome, had_repository
from firebreak.outcomes import (
    Failure,
    Operation,
    PartialBackup,
    RepositoryNotFound,
    ResticError,
    ResticFailed,
    SiteFull,
    Stalled,
    Status,
    is_transient,
)
from firebreak.placement.targets import parse_repository
from firebreak.restic import commands
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import backup_summary, partial_backup_problem
from firebreak.restic.result import ResticResult

logger = logging.getLogger(__name__)

# Told each of restic's status lines of a backup: the source, the site, the line.
BackupProgress = Callable[[str, str, dict[str, Any]], None]


@dataclass(frozen=True)
class RetryPlan:
    """Retries of transient failures: exponential backoff with jitter, never past deadline."""

    attempts: int
    initial_delay: float
    max_delay: float
    # time.monotonic() after which no retry starts (the source's next scheduled cycle).
    deadline: float | None = None

    def delay(self, attempt: int, now: float) -> float | None:
        """Seconds to wait before retry number attempt+1, or None: give up."""
        if attempt >= self.attempts:
            return None
        ceiling = min(self.max_delay, self.initial_delay * float(2**attempt))
        wait: float = ceiling * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not crypto)
        if self.deadline is not None and now + wait >= self.deadline:
            return None
        return wait


def back_up_site(
    rt: Runtime,
    source_name: str,
    site_name: str,
    *,
    cycle_id: int | None = None,
    cancel: threading.Event | None = None,
    retry: RetryPlan | None = None,
    stage: Path | None = None,
    progress: BackupProgress | None = None,
) -> Run:
    """Back up one source (its paths, or its dump's stage) to one site and return the last
    run row. ``progress`` hears restic's status lines, for a terminal's bars.

    Every try is its own row, written as ``running`` before restic starts and finished
    whatever happens. Transient failures are retried when a RetryPlan is given.
    """
    attempt = 0
    while True:
        run = _one_try(rt, source_name, site_name, cycle_id, cancel, stage, progress)
        if run.status in (Status.SUCCESS, Status.PARTIAL) or retry is None:
            return run
        if not is_transient(run.error_class) or (cancel is not None and cancel.is_set()):
            return run
        wait = retry.delay(attempt, time.monotonic())
        if wait is None:
            return run
        attempt += 1
        RunLog(logger, {"source": source_name, "site": site_name, "run_id": run.id}).warning(
            "%s; retry %d of %d in %.0fs", run.error_class, attempt, retry.attempts, wait
        )
        if (cancel or threading.Event()).wait(wait):
            return run


def _one_try(
    rt: Runtime,
    source_name: str,
    site_name: str,
    cycle_id: int | None,
    cancel: threading.Event | None,
    stage: Path | None,
    progress: BackupProgress | None,
) -> Run:
    def back_up(access: SiteAccess, log: RunLog) -> RunOutcome:
        log.info("backup started")
        heard = None if progress is None else functools.partial(progress, source_name, site_name)
        return _back_up(rt, source_name, access, log, cycle_id, cancel, stage, heard)

    run = at_site(
        rt, source_name, site_name, Operation.BACKUP, back_up, cycle_id=cycle_id, cancel=cancel
    )
    _log_outcome(RunLog(logger, {"source": source_name, "site": site_name, "run_id": run.id}), run)
    return run


def _back_up(
    rt: Runtime,
    source_name: str,
    access: SiteAccess,
    log: RunLog,
    cycle_id: int | None,
    cancel: threading.Event | None,
    stage: Path | None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
) -> RunOutcome:
    invocation = commands.backup(
        rt.restic_at(access),
        source_name=source_name,
        source=rt.config.sources[source_name],
        host=rt.host,
        stage=stage,
    )
    result = run_restic(rt, invocation, access, cancel, on_status=on_status)
    error = classify(result)
    initialized = False
    # A site that held a repository is lost when it has none, never created anew
    # (actions/identity.py says so).
    if (
        isinstance(error, RepositoryNotFound)
        and access.site.init == "auto"
        and not had_repository(rt.engine, location(rt, access.name), rt.host, access.name)
    ):
        failed, initialized = _create(rt, source_name, access, log, cycle_id, cancel)
        if failed is not None:
            return failed
        result = run_restic(rt, invocation, access, cancel, on_status=on_status)
        error = classify(result)
    if isinstance(error, Stalled):
        error = _full_instead(access, error)
    outcome = backup_outcome(result, error, initialized=initialized)
    if isinstance(error, RepositoryNotFound):
        hint = " (init: never — create it with `restic init`, or set init: auto)"
        outcome = replace(outcome, error_message=f"{outcome.error_message}{hint}")
    return outcome


# Less room than this left at a local site whose backup stalled: the site is full. restic
# writes packs of 16 MiB (its default since 0.14) and deletes one it could not finish, so a
# full site can show most of a pack free: 8 MiB was seen where restic 0.14 hung.
_NO_ROOM = 64 << 20


def _full_instead(access: SiteAccess, stalled: Stalled) -> ResticError:
    """A stall at a local site whose filesystem has less room than a few packs is that site
    being full: restic (0.14 and 0.18 seen) now and then hangs there without a word."""
    target = parse_repository(access.repository)
    if target.kind != "local" or not target.path:
        return stalled
    where = Path(target.path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        room = os.statvfs(where)
    except OSError:
        return stalled
    free = room.f_bavail * room.f_frsize
    if free >= _NO_ROOM:
        return stalled
    return SiteFull(f"no space left on device at {where} ({free} bytes free); {stalled.message}")


def _create(
    rt: Runtime,
    source_name: str,
    access: SiteAccess,
    log: RunLog,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> tuple[RunOutcome | None, bool]:
    """Create the site's repository (init: auto): (how the run ends if that failed, whether
    this run created it). Hosts sharing the repository create it one at a time: two
    ``restic init`` at once leave a config only one of them can read. So the others wait, and
    find it there."""
    purpose = f"creating the repository for {source_name}"
    with repository_turn(rt, access.name, purpose, patience=None, cancel=cancel):
        probe = run_restic(rt, commands.cat_config(rt.restic_at(access)), access, cancel)
        found = classify(probe)
        if found is None:
            log.info("the repository is there now: another host created it meanwhile")
            return None, False
        if not isinstance(found, RepositoryNotFound):
            return None, False  # the backup's second try says what is wrong
        log.warning("no repository at the site; creating it (init: auto)")
        return create_repository(rt, source_name, access, cycle_id, cancel), True


def backup_outcome(result: ResticResult, error: Failure | None, *, initialized: bool) -> RunOutcome:
    """Nothing is a success until restic printed a summary naming a snapshot."""
    summary = backup_summary(result)
    recorded = RunOutcome(
        Status.FAILED, exit_code=result.exit_code, repository_initialized=initialized
    )
    if summary is not None:
        recorded = replace(
            recorded,
            snapshot_id=summary.snapshot_id,
            files_new=summary.files_new,
            files_changed=summary.files_changed,
            files_unmodified=summary.files_unmodified,
            bytes_added=summary.data_added,
            bytes_processed=summary.total_bytes_processed,
        )
    has_snapshot = summary is not None and bool(summary.snapshot_id)
    if error is None:
        if has_snapshot:
            return replace(recorded, status=Status.SUCCESS)
        missing = ResticFailed("restic exited 0 without a summary naming a snapshot")
        return replace(recorded, error_class=missing.error_class, error_message=missing.message)
    if isinstance(error, PartialBackup) and has_snapshot:
        return replace(
            recorded,
            status=Status.PARTIAL,
            error_class=error.error_class,
            error_message=partial_backup_problem(result),
        )
    return replace(
        recorded,
        status=error.status,
        error_class=error.error_class,
        error_message=error.message,
        snapshot_id=None,
    )


def _log_outcome(log: RunLog, run: Run) -> None:
    if run.status == Status.SUCCESS:
        log.info(
            "backup succeeded: snapshot %s, %s bytes added in %.1fs",
            run.snapshot_id,
            run.bytes_added,
            run.duration_seconds or 0.0,
        )
    elif run.status == Status.PARTIAL:
        log.warning("backup partial: snapshot %s; %s", run.snapshot_id, run.error_message)
    else:
        log.error("backup %s: %s: %s", run.status, run.error_class, run.error_message)
