"""A restore drill at one site: restore a random sample of the latest snapshot's files and
verify them against the snapshot (restic --verify) and the live files that have not changed
since. A failed drill is a failure of that site."""

from __future__ import annotations

import filecmp
import logging
import os
import random
import shutil
import tempfile
import threading
from pathlib import Path

from firebreak.config.references import UnresolvedReference
from firebreak.cycles.locks import site_lock
from firebreak.cycles.runtime import Runtime
from firebreak.history.models import Run, Status
from firebreak.history.records import RunOutcome, finish_run, start_run
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import snapshot_list

log = logging.getLogger(__name__)


def drill_site(
    rt: Runtime, source: str, site_name: str, cancel: threading.Event | None = None
) -> Run:
    site = rt.config.sites[site_name]
    with site_lock(rt.locks_dir, site_name, f"drill of {source}", cancel), rt.run_slots:
        run_id = start_run(
            rt.engine, source=source, site=site_name, operation="drill", host=rt.host,
            restic_version=str(rt.restic_version), pid=os.getpid(),
        )  # fmt: skip
        try:
            access = resolve_site(site_name, site)
            outcome = _drill(rt, source, access, cancel)
        except UnresolvedReference as exc:
            outcome = RunOutcome(Status.FAILED, error_class="ConfigError", error_message=str(exc))
        return finish_run(rt.engine, run_id, outcome)


def _drill(
    rt: Runtime, source: str, access: SiteAccess, cancel: threading.Event | None
) -> RunOutcome:
    site = access.site
    timeout = site.timeout.total_seconds()
    env = os.environ
    listed = runner.run(
        commands.snapshots(rt.restic_binary, access, rt.cache_dir, env, source_name=source),
        timeout=timeout,
        cancel=cancel,
    )
    error = classify(listed)
    if error is not None:
        return RunOutcome(Status.FAILED, error_class=error.error_class, error_message=error.message)
    snapshots = snapshot_list(listed)
    if not snapshots:
        return RunOutcome(Status.FAILED, error_class="SnapshotNotFound",
                          error_message="no snapshot of this source to drill")  # fmt: skip
    snapshot = snapshots[-1]
    files = runner.run(
        commands.ls(rt.restic_binary, access, rt.cache_dir, env, snapshot=snapshot.id),
        timeout=timeout,
        cancel=cancel,
    )
    error = classify(files)
    if error is not None:
        return RunOutcome(Status.FAILED, error_class=error.error_class, error_message=error.message)
    candidates = [
        (str(node["path"]), int(node.get("size") or 0))
        for node in files.messages
        if isinstance(node, dict) and node.get("type") == "file" and "path" in node
    ]
    random.shuffle(candidates)
    sample: list[str] = []
    total = 0
    for path, size in candidates:
        if len(sample) >= site.drill_files or (sample and total + size > site.drill_max_bytes):
            break
        sample.append(path)
        total += size
    if not sample:
        return RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id=snapshot.short,
                          error_message="the snapshot holds no files")  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="drill-", dir=rt.config.state_dir))
    try:
        restored = runner.run(
            commands.restore(
                rt.restic_binary, access, rt.cache_dir, env, snapshot=snapshot.id,
                target=scratch, include=tuple(_literal(path) for path in sample), verify=True,
            ),
            timeout=timeout,
            cancel=cancel,
        )  # fmt: skip
        error = classify(restored)
        if error is not None:
            return RunOutcome(Status.FAILED, exit_code=restored.exit_code,
                              error_class="DrillFailed", error_message=error.message)  # fmt: skip
        taken = snapshot.time.timestamp()
        for path in sample:
            copy = scratch / path.lstrip("/")
            live = Path(path)
            if not copy.is_file():
                return RunOutcome(Status.FAILED, error_class="DrillFailed",
                                  error_message=f"{path} was not restored")  # fmt: skip
            unchanged = live.is_file() and live.stat().st_mtime <= taken
            if unchanged and not filecmp.cmp(live, copy, shallow=False):
                return RunOutcome(Status.FAILED, error_class="DrillFailed",
                                  error_message=f"{path} differs from the live file")  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info(
        "drill of %s at %s: %d files, %d bytes verified", source, access.name, len(sample), total
    )
    return RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id=snapshot.short,
                      files_new=len(sample), bytes_processed=total)  # fmt: skip


def _literal(path: str) -> str:
    """An --include pattern that matches exactly this path (restic patterns are globs)."""
    return "".join(f"\\{char}" if char in "*?[\\" else char for char in path)
