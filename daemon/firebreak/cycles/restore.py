"""Restore a source from the freshest site that answers, falling back site by site.

Each attempt restores into its own staging directory beside the target and is moved into
place only when restic finished and verified it, so a site lost mid-restore leaves nothing
half-written in the target. Every attempt is a recorded run (operation ``restore``).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from firebreak.config.references import UnresolvedReference
from firebreak.cycles.runtime import Runtime
from firebreak.history.models import Status
from firebreak.history.records import RunOutcome, finish_run, latest_runs, start_run
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from firebreak.restic.errors import Interrupted, classify
from firebreak.restic.messages import Snapshot, snapshot_list
from firebreak.restic.version import Feature, supports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    site: str
    error: str | None
    snapshot: Snapshot | None = None


@dataclass(frozen=True)
class RestoreReport:
    source: str
    target: Path
    attempts: list[Attempt]

    @property
    def restored(self) -> Attempt | None:
        return next((a for a in self.attempts if a.error is None), None)


def site_order(rt: Runtime, source: str, only: str | None, without: str | None = None) -> list[str]:
    """The source's sites, freshest recorded success first (never-succeeded ones last)."""
    if only is not None:
        return [only]
    latest = latest_runs(rt.engine, sources=[source])
    sites = [site for site in rt.config.sources[source].sites if site != without]

    def freshness(site: str) -> float:
        entry = latest.get((source, site))
        success = entry.last_success if entry else None
        return -success.started_at.timestamp() if success else float("inf")

    return sorted(sites, key=freshness)


def restore_source(
    rt: Runtime,
    source: str,
    target: Path,
    *,
    site: str | None = None,
    snapshot: str = "latest",
    include: tuple[str, ...] = (),
    cancel: threading.Event | None = None,
    without: str | None = None,
) -> RestoreReport:
    """without: a site to treat as destroyed (the disaster rehearsal)."""
    attempts: list[Attempt] = []
    for name in site_order(rt, source, site, without):
        attempt = _restore_from(rt, source, name, target, snapshot, include, cancel)
        attempts.append(attempt)
        if attempt.error is None or (cancel is not None and cancel.is_set()):
            break
        log.warning(
            "restore of %s from %s failed (%s); trying the next site", source, name, attempt.error
        )
    return RestoreReport(source, target, attempts)


def _restore_from(
    rt: Runtime,
    source: str,
    site_name: str,
    target: Path,
    snapshot: str,
    include: tuple[str, ...],
    cancel: threading.Event | None,
) -> Attempt:
    site = rt.config.sites[site_name]
    run_id = start_run(
        rt.engine,
        source=source,
        site=site_name,
        operation="restore",
        host=rt.host,
        restic_version=str(rt.restic_version),
        pid=os.getpid(),
    )
    staging = target.parent / f".{target.name}.firebreak-{site_name}"
    try:
        access = resolve_site(site_name, site)
    except UnresolvedReference as exc:
        return _failed(rt, run_id, site_name, "ConfigError", str(exc))
    listed = runner.run(
        commands.snapshots(rt.restic_binary, access, rt.cache_dir, os.environ, source_name=source),
        timeout=site.timeout.total_seconds(),
        cancel=cancel,
    )
    error = classify(listed)
    if error is not None:
        return _failed(rt, run_id, site_name, error.error_class, error.message)
    snapshots = snapshot_list(listed)
    chosen = (
        snapshots[-1] if snapshot == "latest" and snapshots
        else next((s for s in snapshots if s.id.startswith(snapshot)), None)
    )  # fmt: skip
    if chosen is None:
        what = "no snapshot of this source" if snapshot == "latest" else f"no snapshot {snapshot}"
        return _failed(rt, run_id, site_name, "SnapshotNotFound", f"{what} at {site_name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    result = runner.run(
        commands.restore(
            rt.restic_binary, access, rt.cache_dir, os.environ,
            snapshot=chosen.id, target=staging, include=include, verify=True,
        ),
        timeout=site.timeout.total_seconds(),
        # Before 0.16 restore prints nothing until it ends: silence is not a stall there.
        stall_timeout=site.stall_timeout.total_seconds()
        if supports(rt.restic_version, Feature.RESTORE_PROGRESS)
        else None,
        cancel=cancel,
    )  # fmt: skip
    error = classify(result)
    if error is not None:
        shutil.rmtree(staging, ignore_errors=True)
        status = Status.INTERRUPTED if isinstance(error, Interrupted) else Status.FAILED
        finish_run(
            rt.engine,
            run_id,
            RunOutcome(status, exit_code=result.exit_code, error_class=error.error_class,
                       error_message=error.message),
        )  # fmt: skip
        return Attempt(site_name, f"{error.error_class}: {error.message}")
    target.mkdir(parents=True, exist_ok=True)
    for entry in staging.iterdir():
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink() and entry.is_dir():
            shutil.copytree(entry, destination, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(entry)
        else:
            entry.replace(destination)
    staging.rmdir()
    finish_run(rt.engine, run_id, RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id=chosen.short))
    return Attempt(site_name, None, chosen)


def _failed(rt: Runtime, run_id: int, site: str, error_class: str, message: str) -> Attempt:
    finish_run(
        rt.engine, run_id, RunOutcome(Status.FAILED, error_class=error_class, error_message=message)
    )
    return Attempt(site, f"{error_class}: {message}")


def snapshot_age(snapshot: Snapshot, now: datetime) -> float:
    return (now - snapshot.time).total_seconds()
