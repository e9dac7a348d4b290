"""One backup run of one source at one site: record → restic → record."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, replace

from firebreak.config.references import UnresolvedReference
from firebreak.cycles.locks import LockWaitCancelled, site_lock
from firebreak.cycles.runtime import RunLog, Runtime
from firebreak.history.models import Run, Status
from firebreak.history.records import RunOutcome, finish_run, start_run
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import (
    Interrupted,
    PartialBackup,
    RepositoryNotFound,
    ResticError,
    classify,
    is_transient,
    leaves_stale_lock,
)
from firebreak.restic.messages import backup_summary, unreadable_items
from firebreak.restic.result import ResticResult

logger = logging.getLogger(__name__)


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
) -> Run:
    """Back up one source to one site and return the last run row.

    Every try is its own row, written as ``running`` before restic starts and finished
    whatever happens. Transient failures are retried when a RetryPlan is given.
    """
    attempt = 0
    while True:
        run = _one_try(rt, source_name, site_name, cycle_id, cancel)
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
) -> Run:
    purpose = f"backup of {source_name}"
    try:
        with site_lock(rt.locks_dir, site_name, purpose, cancel), rt.run_slots:
            if site_name in rt.needs_unlock:
                _unlock(rt, source_name, site_name, cycle_id, cancel)
            run_id = _start(rt, "backup", source_name, site_name, cycle_id)
            log = RunLog(logger, {"source": source_name, "site": site_name, "run_id": run_id})
            log.info("backup started")
            try:
                outcome = _back_up(rt, source_name, site_name, log, cycle_id, cancel)
            except ResticError as exc:  # restic could not be started: say why, not "crashed"
                outcome = RunOutcome(
                    Status.FAILED, error_class=exc.error_class, error_message=exc.message
                )
            except BaseException as exc:
                finish_run(
                    rt.engine,
                    run_id,
                    RunOutcome(
                        Status.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else Status.FAILED,
                        error_class="InternalError",
                        error_message=f"{type(exc).__name__} in firebreak",
                    ),
                )
                raise
            if leaves_stale_lock(outcome.error_class):
                rt.needs_unlock.add(site_name)
            run = finish_run(rt.engine, run_id, outcome)
    except LockWaitCancelled as exc:
        run_id = _start(rt, "backup", source_name, site_name, cycle_id)
        return finish_run(
            rt.engine,
            run_id,
            RunOutcome(Status.INTERRUPTED, error_class="Interrupted", error_message=str(exc)),
        )
    _log_outcome(log, run)
    return run


def _start(rt: Runtime, operation: str, source: str, site: str, cycle_id: int | None) -> int:
    """Record a run of this process as ``running``."""
    return start_run(
        rt.engine,
        source=source,
        site=site,
        operation=operation,
        host=rt.host,
        restic_version=str(rt.restic_version),
        cycle_id=cycle_id,
        pid=os.getpid(),
    )


def _back_up(
    rt: Runtime,
    source_name: str,
    site_name: str,
    log: RunLog,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> RunOutcome:
    site = rt.config.sites[site_name]
    try:
        access = resolve_site(site_name, site)
    except UnresolvedReference as exc:
        return RunOutcome(
            Status.FAILED, error_class="ConfigError", error_message=f"sites.{site_name}: {exc}"
        )
    invocation = commands.backup(
        rt.restic_binary,
        access,
        rt.cache_dir,
        os.environ,
        source_name=source_name,
        source=rt.config.sources[source_name],
        host=rt.host,
    )
    result = _run(rt, invocation, access, cancel)
    error = classify(result)
    initialized = False
    if isinstance(error, RepositoryNotFound) and site.init == "auto":
        log.warning("no repository at the site; creating it (init: auto)")
        init = commands.init(rt.restic_binary, access, rt.cache_dir, os.environ)
        init_error = _recorded(rt, "init", source_name, access, init, cycle_id, cancel)
        if init_error is not None:
            return RunOutcome(
                Status.INTERRUPTED if isinstance(init_error, Interrupted) else Status.FAILED,
                exit_code=init_error.exit_code,
                error_class=init_error.error_class,
                error_message=f"creating the repository failed: {init_error.message}",
            )
        initialized = True
        result = _run(rt, invocation, access, cancel)
        error = classify(result)
    outcome = backup_outcome(result, error, initialized=initialized)
    if isinstance(error, RepositoryNotFound):
        hint = " (init: never — create it with `restic init`, or set init: auto)"
        outcome = replace(outcome, error_message=f"{outcome.error_message}{hint}")
    return outcome


def _unlock(
    rt: Runtime,
    source_name: str,
    site_name: str,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> None:
    """``restic unlock`` (stale locks only) after a run that was stopped or hit a lock."""
    try:
        access = resolve_site(site_name, rt.config.sites[site_name])
    except UnresolvedReference:
        return  # the backup reports it
    logger.info("%s: removing stale locks left by an earlier run (restic unlock)", site_name)
    unlock = commands.unlock(rt.restic_binary, access, rt.cache_dir, os.environ)
    if _recorded(rt, "unlock", source_name, access, unlock, cycle_id, cancel) is None:
        rt.needs_unlock.discard(site_name)


def _run(
    rt: Runtime, invocation: runner.Invocation, access: SiteAccess, cancel: threading.Event | None
) -> ResticResult:
    site = access.site
    return runner.run(
        invocation,
        timeout=site.timeout.total_seconds(),
        stall_timeout=site.stall_timeout.total_seconds(),
        cancel=cancel,
        kill_grace=rt.kill_grace,
    )


def _recorded(
    rt: Runtime,
    operation: str,
    source_name: str,
    access: SiteAccess,
    invocation: runner.Invocation,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> ResticError | None:
    """A housekeeping restic operation (init, unlock) at the site, recorded as its own run."""
    run_id = _start(rt, operation, source_name, access.name, cycle_id)
    try:
        result = _run(rt, invocation, access, cancel)
        error = classify(result)
        exit_code: int | None = result.exit_code
    except ResticError as exc:  # restic could not even be started
        error, exit_code = exc, None
    except BaseException:
        finish_run(
            rt.engine,
            run_id,
            RunOutcome(Status.FAILED, error_class="InternalError", error_message="crashed"),
        )
        raise
    finish_run(
        rt.engine,
        run_id,
        RunOutcome(Status.SUCCESS, exit_code=0, repository_initialized=operation == "init")
        if error is None
        else RunOutcome(
            Status.INTERRUPTED if isinstance(error, Interrupted) else Status.FAILED,
            exit_code=exit_code,
            error_class=error.error_class,
            error_message=error.message,
        ),
    )
    return error


def backup_outcome(
    result: ResticResult, error: ResticError | None, *, initialized: bool
) -> RunOutcome:
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
        return replace(
            recorded,
            error_class="ResticFailed",
            error_message="restic exited 0 without a summary naming a snapshot",
        )
    if isinstance(error, PartialBackup) and has_snapshot:
        unreadable = unreadable_items(result)
        message = "snapshot written, but some files could not be read"
        return replace(
            recorded,
            status=Status.PARTIAL,
            error_class=error.error_class,
            error_message=f"{message}: {unreadable}" if unreadable else message,
        )
    return replace(
        recorded,
        status=Status.INTERRUPTED if isinstance(error, Interrupted) else Status.FAILED,
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
