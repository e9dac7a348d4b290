"""Retention: ``restic forget --prune`` of one source's snapshots at each site."""

from __future__ import annotations

import logging
import os
import threading

from firebreak.config.references import UnresolvedReference
from firebreak.cycles.locks import site_lock
from firebreak.cycles.runtime import Runtime
from firebreak.history.models import Run, Status
from firebreak.history.records import RunOutcome, finish_run, start_run
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from firebreak.restic.errors import Interrupted, classify

log = logging.getLogger(__name__)


def forget_at_site(
    rt: Runtime,
    source: str,
    site_name: str,
    *,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
) -> Run:
    retention = rt.config.sources[source].retention
    assert retention is not None, "the caller checks that the source has a retention policy"
    site = rt.config.sites[site_name]
    with site_lock(rt.locks_dir, site_name, f"retention of {source}", cancel), rt.run_slots:
        run_id = start_run(
            rt.engine,
            source=source,
            site=site_name,
            operation="forget",
            host=rt.host,
            restic_version=str(rt.restic_version),
            pid=os.getpid(),
        )
        if site.append_only:
            reason = "the site is append-only (append_only: true); nothing is deleted there"
            log.info("%s → %s: %s", source, site_name, reason)
            return finish_run(rt.engine, run_id, RunOutcome(Status.SKIPPED, error_message=reason))
        try:
            access = resolve_site(site_name, site)
        except UnresolvedReference as exc:
            outcome = RunOutcome(Status.FAILED, error_class="ConfigError", error_message=str(exc))
            return finish_run(rt.engine, run_id, outcome)
        invocation = commands.forget(
            rt.restic_binary, access, rt.cache_dir, os.environ,
            source_name=source, host=rt.host, retention=retention, dry_run=dry_run,
        )  # fmt: skip
        result = runner.run(
            invocation,
            timeout=site.timeout.total_seconds(),
            cancel=cancel,
            kill_grace=rt.kill_grace,
        )
        error = classify(result)
        if error is None:
            return finish_run(rt.engine, run_id, RunOutcome(Status.SUCCESS, exit_code=0))
        status = Status.INTERRUPTED if isinstance(error, Interrupted) else Status.FAILED
        outcome = RunOutcome(
            status,
            exit_code=result.exit_code,
            error_class=error.error_class,
            error_message=error.message,
        )
        return finish_run(rt.engine, run_id, outcome)


def apply_retention(
    rt: Runtime,
    source: str,
    sites: list[str] | None = None,
    *,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
) -> list[Run]:
    """Forget and prune at each site in turn; one site's failure does not stop the others."""
    runs = []
    for name in sites or rt.config.sources[source].sites:
        if cancel is not None and cancel.is_set():
            break
        runs.append(forget_at_site(rt, source, name, dry_run=dry_run, cancel=cancel))
    return runs
