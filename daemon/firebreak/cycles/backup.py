"""One backup run of one source at one site: record → restic → record."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace

from firebreak.config.references import UnresolvedReference
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
)
from firebreak.restic.messages import backup_summary, unreadable_items
from firebreak.restic.result import ResticResult

logger = logging.getLogger(__name__)


def back_up_site(
    rt: Runtime,
    source_name: str,
    site_name: str,
    *,
    cycle_id: int | None = None,
    cancel: threading.Event | None = None,
) -> Run:
    """Back up one source to one site and return the finished run row.

    The row is written as ``running`` before restic starts and finished whatever happens,
    so a crash inside firebreak still leaves a failed run rather than a silent gap.
    """
    with rt.run_slots:
        run_id = start_run(
            rt.engine,
            source=source_name,
            site=site_name,
            operation="backup",
            host=rt.host,
            restic_version=str(rt.restic_version),
            cycle_id=cycle_id,
            pid=os.getpid(),
        )
        log = RunLog(logger, {"source": source_name, "site": site_name, "run_id": run_id})
        log.info("backup started")
        try:
            outcome = _back_up(rt, source_name, site_name, log, cycle_id, cancel)
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
    run = finish_run(rt.engine, run_id, outcome)
    _log_outcome(log, run)
    return run


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
        init_error = _init(rt, source_name, access, cycle_id, cancel)
        if init_error is not None:
            return RunOutcome(
                Status.FAILED,
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


def _run(
    rt: Runtime, invocation: runner.Invocation, access: SiteAccess, cancel: threading.Event | None
) -> ResticResult:
    site = access.site
    return runner.run(
        invocation,
        timeout=site.timeout.total_seconds(),
        stall_timeout=site.stall_timeout.total_seconds(),
        cancel=cancel,
    )


def _init(
    rt: Runtime,
    source_name: str,
    access: SiteAccess,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> ResticError | None:
    """``restic init`` at the site, recorded as its own run."""
    run_id = start_run(
        rt.engine,
        source=source_name,
        site=access.name,
        operation="init",
        host=rt.host,
        restic_version=str(rt.restic_version),
        cycle_id=cycle_id,
        pid=os.getpid(),
    )
    result = _run(
        rt, commands.init(rt.restic_binary, access, rt.cache_dir, os.environ), access, cancel
    )
    error = classify(result)
    finish_run(
        rt.engine,
        run_id,
        RunOutcome(Status.SUCCESS, exit_code=0, repository_initialized=True)
        if error is None
        else RunOutcome(
            Status.FAILED,
            exit_code=result.exit_code,
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
