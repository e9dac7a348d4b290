"""The disaster rehearsal: treat one site as destroyed, restore every source that uses it
from the others, and compare the bytes with the live data."""

from __future__ import annotations

import filecmp
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from firebreak.actions.dump_drill import prove_dump, scratch_lock
from firebreak.actions.flocks import LockWaitCancelled
from firebreak.actions.live_files import untouched_since
from firebreak.actions.restore import restore_source, snapshot_age
from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.outcomes import Failure


@dataclass
class SourceDrill:
    source: str
    site: str | None = None  # where it was restored from
    error: str | None = None
    recovery_point_seconds: float | None = None  # age of the data restored
    seconds: float = 0.0
    files_compared: int = 0
    changed_since: list[str] = field(default_factory=list)  # live file newer than the snapshot
    different: list[str] = field(default_factory=list)  # same age, other bytes: corruption
    proven: str | None = None  # what a dump's own tools proved of it

    @property
    def passed(self) -> bool:
        return self.error is None and not self.different


def fire_drill(
    rt: Runtime, lost_site: str, scratch: Path, cancel: threading.Event | None = None
) -> list[SourceDrill]:
    results = []
    for name, source in rt.config.sources.items():
        if lost_site not in source.sites:
            continue
        drill = SourceDrill(name)
        started = time.monotonic()
        target = scratch / name
        report = restore_source(rt, name, target, cancel=cancel, without=lost_site)
        restored = report.restored
        if restored is None or restored.snapshot is None:
            failures = "; ".join(f"{a.site}: {a.error}" for a in report.attempts) or "no other site"
            drill.error = f"could not be restored without {lost_site}: {failures}"
        else:
            drill.site = restored.site
            drill.recovery_point_seconds = snapshot_age(restored.snapshot, utcnow())
            snapshot_time = restored.snapshot.time.timestamp()
            for path in source.paths:
                _compare(path, target / path.relative_to("/"), snapshot_time, drill)
            if source.dump_kind is not None:
                # A dump has no live files to compare with: its own tools prove it.
                try:
                    with scratch_lock(rt.locks_dir, source, cancel):
                        drill.proven = prove_dump(source, target, cancel)
                except Failure as exc:
                    drill.error = f"restored from {restored.site}, but {exc.message}"
                except LockWaitCancelled:
                    drill.error = f"restored from {restored.site}, but stopped on request"
        drill.seconds = time.monotonic() - started
        shutil.rmtree(target, ignore_errors=True)
        results.append(drill)
    return results


def _compare(live: Path, restored: Path, snapshot_time: float, drill: SourceDrill) -> None:
    if not live.exists():
        return
    walk = [(str(live.parent), [], [live.name])] if live.is_file() else os.walk(live)
    for directory, _dirs, files in walk:
        for name in files:
            original = Path(directory) / name
            copy = restored / original.relative_to(live) if live.is_dir() else restored
            if original.is_symlink() or not original.is_file():
                continue
            newer = not untouched_since(original, snapshot_time)
            if not copy.is_file():
                (drill.changed_since if newer else drill.different).append(str(original))
                continue
            drill.files_compared += 1
            if not filecmp.cmp(original, copy, shallow=False):
                (drill.changed_since if newer else drill.different).append(str(original))
