"""Restore a source from the freshest site that answers, falling back site by site.

Each attempt restores into its own staging directory beside the target and is moved into
place only when restic finished and verified it, so a site lost mid-restore leaves nothing
half-written in the target. Every attempt is a recorded run (operation ``restore``).
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from firebreak.actions.head_start import HeadStart, staging_for
from firebreak.actions.identity import expected_repository, replaced, stranger_at
from firebreak.actions.operation import at_site, run_restic, source_snapshots
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.history.latest import latest_runs, lost_sites
from firebreak.history.records import RunOutcome
from firebreak.history.unwritten import HISTORY_ERRORS
from firebreak.outcomes import Operation, SnapshotNotFound, Status
from firebreak.restic import commands
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import Snapshot, listed_file
from firebreak.restic.progress import IoCounters
from firebreak.restic.result import ResticResult

log = logging.getLogger(__name__)

# restic 0.14's restore ignores SIGINT while it waits on a dead site. A restore only reads: the
# lock a killed one leaves is non-exclusive and stale once its process is gone, so it need not
# be given long before SIGKILL, and the next site is tried sooner.
READER_KILL_GRACE = 5.0
# What every restic from 0.14 says when asked to restore a snapshot id it does not hold.
NO_SUCH_SNAPSHOT = "no matching ID found"


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


def site_order(
    rt: Runtime, source: str, only: str | None, without: str | None = None, *, quiet: bool = False
) -> list[str]:
    """The source's sites, freshest recorded success first (never-succeeded ones last). A lost
    site is not tried unless named: its repository is gone, or not the site's (said, unless
    quiet)."""
    if only is not None:
        return [only]
    latest = latest_runs(rt.engine, sources=[source], host=rt.host)
    lost = lost_sites(rt.engine, rt.host)
    if not quiet:
        for name in sorted(set(rt.config.sources[source].sites) & set(lost)):
            log.warning("restore of %s: site %s is lost; not tried", source, name)
    sites = [s for s in rt.config.sources[source].sites if s != without and s not in lost]

    def freshness(site: str) -> float:
        entry = latest.get((source, site))
        success = entry.last_success if entry else None
        return -success.started_at.timestamp() if success else float("inf")

    return sorted(sites, key=freshness)


@dataclass(frozen=True)
class RestoreProgress:
    """How far a restore from one site has come, for a progress bar.

    written: bytes restic has written so far (the kernel's count for the process), total:
    the size of what is being restored, when known. After the last byte restic verifies.
    received: bytes restic has read, from the site and from disk: restic writes a file only
    once the pack holding it has arrived, so this moves first.
    """

    site: str
    written: int = 0
    total: int | None = None
    received: int = 0

    @property
    def verifying(self) -> bool:
        return self.total is not None and self.written >= self.total


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
    progress: Callable[[RestoreProgress], None] | None = None,
    head: HeadStart | None = None,
) -> RestoreReport:
    """without: a site to treat as destroyed (the disaster rehearsal). progress: called a few
    times a second while restic restores. head: restic started ahead (actions/head_start.py),
    taken over by the attempt that would start the same one, stopped otherwise."""
    attempts: list[Attempt] = []
    try:
        for name in site_order(rt, source, site, without):
            if head is not None and head.site != name:
                head.discard()
            attempt = _restore_from(
                rt, source, name, target, snapshot, include, cancel, progress, head
            )
            attempts.append(attempt)
            if attempt.error is None or (cancel is not None and cancel.is_set()):
                break
            log.warning(
                "restore of %s from %s failed (%s); trying the next site",
                source,
                name,
                attempt.error,
            )
    finally:
        if head is not None:
            head.discard()
    return RestoreReport(source, target, attempts)


def _restore_from(
    rt: Runtime,
    source: str,
    site_name: str,
    target: Path,
    snapshot: str,
    include: tuple[str, ...],
    cancel: threading.Event | None,
    progress: Callable[[RestoreProgress], None] | None,
    head: HeadStart | None,
) -> Attempt:
    staging = staging_for(target, site_name)
    chosen: list[Snapshot] = []

    def restore(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        # The newest of this host's: the one its history says it wrote last, restored without
        # a listing of the site first (a repository opened once, not twice), unless it is no
        # longer there (forgotten by hand).
        recorded = recorded_newest(rt, source, site_name) if snapshot == "latest" else None
        if recorded is not None:
            outcome = restore_snapshot(access, run_log, recorded)
            if outcome is not None:
                return outcome
            run_log.warning(
                "snapshot %s, the newest recorded here, is not at the site: restoring the "
                "newest the site holds",
                recorded.short,
            )
        # The newest of this host's, or the one named by its id, whichever host wrote it
        # (a machine rebuilt under another name restores its predecessor's).
        snapshots = source_snapshots(rt, access, source, cancel, every_host=snapshot != "latest")
        if isinstance(snapshots, RunOutcome):
            return snapshots
        if snapshot == "latest":
            found = snapshots[-1] if snapshots else None
            what = (
                f"no snapshot of this source from host {rt.host} (a machine rebuilt under "
                "another name: set host: to the old one, or give --snapshot ID)"
            )
        else:
            found = next((s for s in snapshots if s.id.startswith(snapshot)), None)
            what = f"no snapshot {snapshot}"
        outcome = restore_snapshot(access, run_log, found) if found is not None else None
        return outcome or RunOutcome.failed(SnapshotNotFound(f"{what} at {site_name}"))

    def restore_snapshot(access: SiteAccess, run_log: RunLog, found: Snapshot) -> RunOutcome | None:
        """The restore of found, or None when the site has no such snapshot."""
        chosen[:] = [found]
        invocation = commands.restore(
            rt.restic_at(access),
            snapshot=found.id,
            target=staging,
            include=include,
            verify=True,
        )
        started = head.adopt(site_name, invocation) if head is not None else None
        if started is None:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        run_log.info(
            "restoring snapshot %s into %s%s",
            found.short,
            staging,
            " (restic started ahead)" if started is not None else "",
        )
        if progress is None:
            result = run_restic(
                rt, invocation, access, cancel, kill_grace=READER_KILL_GRACE, started=started
            )
        else:
            with _SizeListing(rt, access, found, include) as size:
                progress(RestoreProgress(site_name))

                def on_io(counters: IoCounters) -> None:
                    progress(
                        RestoreProgress(site_name, counters.written, size.total, counters.read)
                    )

                result = run_restic(
                    rt,
                    invocation,
                    access,
                    cancel,
                    on_io=on_io,
                    kill_grace=READER_KILL_GRACE,
                    started=started,
                )
        error = classify(result)
        if error is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if _no_such_snapshot(result):
                return None
            return RunOutcome.failed(error, result.exit_code)
        stranger = stranger_at(rt, site_name)
        if stranger is not None:
            # Not the site's repository: none of it may reach the target.
            shutil.rmtree(staging, ignore_errors=True)
            expected = expected_repository(rt, site_name)
            return replaced(site_name, expected, stranger, result.exit_code)
        _move_into(staging, target)
        return RunOutcome(Status.SUCCESS, exit_code=0, snapshot_id=found.short)

    run = at_site(rt, source, site_name, Operation.RESTORE, restore, cancel=cancel, exclusive=False)
    if run.status != Status.SUCCESS:
        return Attempt(site_name, f"{run.error_class}: {run.error_message}")
    return Attempt(site_name, None, chosen[0])


def recorded_newest(rt: Runtime, source: str, site: str) -> Snapshot | None:
    """The snapshot of the newest run of the source at the site in this host's history, when
    that run wrote one (a success, or a partial backup); None when it did not, or when the
    history does not answer: the site's own listing decides then."""
    try:
        entry = latest_runs(rt.engine, sources=[source], host=rt.host).get((source, site))
    except HISTORY_ERRORS:
        return None
    newest = entry.last_attempt if entry is not None else None
    if newest is None or not newest.snapshot_id:
        return None
    # By its short id: restic then looks for it by that prefix, and every restic says the
    # same when it is gone (a full id is opened directly, and each backend says that its own
    # way). restic dates a snapshot when its backup starts, a moment after the run did.
    short = newest.snapshot_id[:8]
    return Snapshot(
        id=short,
        short_id=short,
        time=newest.started_at,
        hostname=rt.host,
        paths=[str(path) for path in rt.config.sources[source].paths],
    )


def _no_such_snapshot(result: ResticResult) -> bool:
    said = [result.error_message(), *result.stderr_tail]
    return result.exit_code != 0 and any(NO_SUCH_SNAPSHOT in line for line in said)


def _move_into(staging: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in staging.iterdir():
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink() and entry.is_dir():
            shutil.copytree(entry, destination, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(entry)
        else:
            entry.replace(destination)
    staging.rmdir()


class _SizeListing:
    """The size of what a restore writes, from a listing of the snapshot that a second restic
    makes beside the restore, so the restore never waits for it (on a snapshot of millions of
    files that takes a while). ``total`` is None until it is known, and stays None when the
    listing fails or the restore ends first: the bar then shows bytes without a percentage."""

    def __init__(
        self, rt: Runtime, access: SiteAccess, snapshot: Snapshot, include: tuple[str, ...]
    ) -> None:
        self.total: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._list,
            args=(rt, access, snapshot, include),
            name=f"restore size at {access.name}",
            daemon=True,
        )

    def __enter__(self) -> _SizeListing:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=READER_KILL_GRACE + 1)

    def _list(
        self, rt: Runtime, access: SiteAccess, snapshot: Snapshot, include: tuple[str, ...]
    ) -> None:
        try:
            self.total = _restore_size(rt, access, snapshot, include, self._stop)
        except Exception:  # only the progress bar depends on it
            log.exception(
                "listing %s at %s for the progress bar failed", snapshot.short, access.name
            )


def _restore_size(
    rt: Runtime,
    access: SiteAccess,
    snapshot: Snapshot,
    include: tuple[str, ...],
    cancel: threading.Event | None,
) -> int | None:
    """Bytes in the files the restore will write, or None when the listing failed."""
    total = 0

    def count(message: object) -> None:
        nonlocal total
        entry = listed_file(message)
        if entry is not None and (not include or _included(entry[0], include)):
            total += entry[1]

    listed = run_restic(
        rt,
        commands.ls(rt.restic_at(access), snapshot=snapshot.id),
        access,
        cancel,
        on_message=count,
        kill_grace=READER_KILL_GRACE,
    )
    return total if classify(listed) is None else None


def _included(path: str, patterns: tuple[str, ...]) -> bool:
    """Roughly restic's --include: a pattern matches the path or one of its parents; one
    without a leading / matches at any depth."""
    candidates = [path]
    parent = posixpath.dirname(path)
    while parent not in ("", "/"):
        candidates.append(parent)
        parent = posixpath.dirname(parent)
    for pattern in patterns:
        anchored = pattern.rstrip("/") if pattern.startswith("/") else f"*/{pattern.rstrip('/')}"
        if any(fnmatch.fnmatchcase(candidate, anchored) for candidate in candidates):
            return True
    return False


def snapshot_age(snapshot: Snapshot, now: datetime) -> float:
    return (now - snapshot.time).total_seconds()
