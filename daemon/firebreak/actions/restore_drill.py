"""A restore drill at one site: restore a random sample of the latest snapshot's files and
verify them against the snapshot (restic --verify) and the live files that have not changed
since. A failed drill is a failure of that site."""

from __future__ import annotations

import filecmp
import glob
import logging
import random
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from firebreak.actions.dump_drill import prove_dump, scratch_lock
from firebreak.actions.flocks import LockWaitCancelled
from firebreak.actions.live_files import untouched_since
from firebreak.actions.operation import at_site, not_run, run_restic, source_snapshots
from firebreak.actions.restore import READER_KILL_GRACE
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome
from firebreak.outcomes import (
    DrillFailed,
    DrillScratchFailed,
    Failure,
    Interrupted,
    Operation,
    SiteFull,
    SiteReadOnly,
    SnapshotNotFound,
    Status,
)
from firebreak.restic import commands
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import Snapshot, listed_file

log = logging.getLogger(__name__)


def drill_site(
    rt: Runtime, source: str, site_name: str, cancel: threading.Event | None = None
) -> Run:
    def drill(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        return _drill(rt, source, access, run_log, cancel)

    try:
        with scratch_lock(rt.locks_dir, rt.config.sources[source], cancel):
            return at_site(rt, source, site_name, Operation.DRILL, drill, cancel=cancel)
    except LockWaitCancelled as exc:
        return not_run(rt, source, site_name, Operation.DRILL, None, Interrupted(str(exc)))


class _Sample:
    """A uniform random sample of the snapshot's files, kept while ``restic ls`` streams them
    (reservoir sampling: a snapshot of millions of files is never held in memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        self.files: list[tuple[str, int]] = []

    def offer(self, message: object) -> None:
        entry = listed_file(message)
        if entry is None:
            return
        self.seen += 1
        if len(self.files) < self.size:
            self.files.append(entry)
            return
        slot = random.randrange(self.seen)  # noqa: S311 (a sample, not a secret)
        if slot < self.size:
            self.files[slot] = entry


def _drill(
    rt: Runtime, source: str, access: SiteAccess, run_log: RunLog, cancel: threading.Event | None
) -> RunOutcome:
    snapshots = source_snapshots(rt, access, source, cancel)
    if isinstance(snapshots, RunOutcome):
        return snapshots
    if not snapshots:
        return RunOutcome.failed(SnapshotNotFound("no snapshot of this source to drill"))
    snapshot = snapshots[-1]
    dump = rt.config.sources[source].dump_kind is not None
    # A dump is proven whole: its files are few, and a sample of one proves nothing.
    picked = _pick(rt, access, snapshot, cancel, everything=dump)
    if isinstance(picked, RunOutcome):
        return picked
    paths, size = picked
    if not paths:
        return RunOutcome(
            Status.SUCCESS,
            exit_code=0,
            snapshot_id=snapshot.short,
            error_message="the snapshot holds no files",
        )
    scratch = Path(tempfile.mkdtemp(prefix="drill-", dir=rt.config.state_dir))
    proven = None
    try:
        trouble = _verify(rt, access, snapshot, paths, scratch, cancel)
        if trouble is None and dump:
            proven = prove_dump(rt.config.sources[source], scratch, cancel)
    except Failure as exc:  # what the dump's own tools said
        trouble = RunOutcome.failed(exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if trouble is not None:
        return trouble
    run_log.info("drill passed: %d files, %d bytes verified", len(paths), size)
    if proven is not None:
        run_log.info("drill passed: %s", proven)
    return RunOutcome(
        Status.SUCCESS,
        exit_code=0,
        snapshot_id=snapshot.short,
        files_new=len(paths),
        bytes_processed=size,
        error_message=proven,  # what the dump's tools proved, for status and the log
    )


def _pick(
    rt: Runtime,
    access: SiteAccess,
    snapshot: Snapshot,
    cancel: threading.Event | None,
    *,
    everything: bool = False,
) -> tuple[list[str], int] | RunOutcome:
    """A random sample of the snapshot's files (drill_files of them, drill_max_bytes at most
    unless the first file alone is bigger), or every file, and its size; or how listing them
    failed."""
    site = access.site
    # Sample more than needed: files too big for drill_max_bytes are passed over.
    reservoir = _Sample(10**9 if everything else site.drill_files * 4)
    listing = commands.ls(rt.restic_at(access), snapshot=snapshot.id)
    listed = run_restic(rt, listing, access, cancel, on_message=reservoir.offer)
    error = classify(listed)
    if error is not None:
        return RunOutcome.failed(error, listed.exit_code)
    candidates = reservoir.files
    random.shuffle(candidates)
    paths: list[str] = []
    total = 0
    for path, size in candidates:
        if everything:
            paths.append(path)
            total += size
            continue
        if len(paths) >= site.drill_files:
            break
        if paths and total + size > site.drill_max_bytes:
            continue
        paths.append(path)
        total += size
    return paths, total


def _verify(
    rt: Runtime,
    access: SiteAccess,
    snapshot: Snapshot,
    paths: list[str],
    scratch: Path,
    cancel: threading.Event | None,
) -> RunOutcome | None:
    """Restore the sample into scratch with restic --verify and compare it with the live files
    that have not changed since; None when every file came back intact."""
    invocation = commands.restore(
        rt.restic_at(access),
        snapshot=snapshot.id,
        target=scratch,
        include=tuple(_literal(path) for path in paths),
        verify=True,
    )
    restored = run_restic(rt, invocation, access, cancel, kill_grace=READER_KILL_GRACE)
    error = classify(restored)
    trouble = _local_trouble(restored.stderr_tail, scratch) if error is not None else None
    if trouble is not None:
        # Our own disk failed us (full, read-only): that says nothing about the site.
        where = f"writing the scratch copy in {scratch.parent} failed: {trouble}"
        return RunOutcome.failed(DrillScratchFailed(where), restored.exit_code)
    if error is not None and (error.transient or isinstance(error, _NO_VERDICT)):
        # The drill could not run (site gone, stopped, full or read-only so that restic
        # cannot take its lock): that proves nothing about the data.
        return RunOutcome.failed(error, restored.exit_code)
    if error is not None:
        return RunOutcome.failed(DrillFailed(error.message), restored.exit_code)
    taken = snapshot.time.timestamp()
    for path in paths:
        copies = _restored(scratch, path)
        if not copies:
            return RunOutcome.failed(DrillFailed(f"{path} was not restored"))
        for copy in copies:
            live = Path("/") / copy.relative_to(scratch)
            unchanged = live.is_file() and untouched_since(live, taken)
            if unchanged and not filecmp.cmp(live, copy, shallow=False):
                return RunOutcome.failed(DrillFailed(f"{path} differs from the live file"))
    return None


_NO_VERDICT = (Interrupted, SiteFull, SiteReadOnly)
_LOCAL_TROUBLE = ("no space left on device", "read-only file system", "disk quota exceeded")


def _local_trouble(stderr: Iterable[str], scratch: Path) -> str | None:
    """restic's first complaint about writing the files into the scratch directory."""
    for line in stderr:
        if str(scratch) not in line:
            continue
        lowered = line.lower()
        for text in _LOCAL_TROUBLE:
            if text in lowered:
                return text
    return None


# restic's JSON says U+FFFD for each byte of a name that is not UTF-8 (Go's encoder does so):
# such a name is included, found and compared through "?" in its place.
_LOST_BYTE = "\ufffd"


def _literal(path: str) -> str:
    """An --include pattern that matches exactly this path (restic patterns are globs), or
    the names with any byte where restic's listing lost one."""
    return "".join(
        "?" if char == _LOST_BYTE else f"\\{char}" if char in "*?[\\" else char for char in path
    )


def _restored(scratch: Path, path: str) -> list[Path]:
    """The restored files the listed path stands for: itself, or the files its lost bytes
    match (their names are the real ones, byte for byte)."""
    copy = scratch / path.lstrip("/")
    if _LOST_BYTE not in path:
        return [copy] if copy.is_file() else []
    pattern = glob.escape(path.lstrip("/")).replace(_LOST_BYTE, "?")
    return [found for found in scratch.glob(pattern) if found.is_file()]
