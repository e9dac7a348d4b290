"""A cycle: one backup of one source to all of its sites, concurrently.

Each site runs in its own thread, bounded by the runtime's run slots; one site's failure,
hang or timeout is recorded for that site and never stops or delays the others.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine

from firebreak.actions.backup import BackupProgress, RetryPlan, back_up_site
from firebreak.actions.dumps import staged_dump
from firebreak.actions.hooks import HookContext, run_hooks
from firebreak.actions.operation import not_run
from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.config.hooks import Hooks
from firebreak.history.models import Run
from firebreak.history.records import (
    cycle_started,
    finish_cycle,
    previous_cycle_status,
    runs_of_cycle,
    start_cycle,
)
from firebreak.history.unwritten import HISTORY_ERRORS, NotWrittenYet
from firebreak.notify.sender import CycleNotifier
from firebreak.outcomes import DumpFailed, Failure, InternalError, Interrupted, Operation, Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleReport:
    cycle_id: int
    source: str
    status: Status
    runs: list[Run]
    sites: list[str]

    @property
    def missing(self) -> list[str]:
        """Sites with no run recorded: firebreak itself failed before restic (see the log)."""
        ran = {run.site for run in self.runs}
        return [site for site in self.sites if site not in ran]

    @property
    def failed(self) -> list[Run]:
        return [run for run in self.runs if run.status not in (Status.SUCCESS, Status.PARTIAL)]

    @property
    def partial(self) -> list[Run]:
        return [run for run in self.runs if run.status == Status.PARTIAL]

    @property
    def failed_sites(self) -> list[str]:
        return [run.site for run in self.failed] + self.missing

    @property
    def succeeded(self) -> int:
        return sum(1 for run in self.runs if run.status == Status.SUCCESS)

    def document(self) -> dict[str, Any]:
        """The report in plain JSON types: what ``firebreak backup`` draws its table from,
        also when the daemon ran the cycle for it (daemon/control.py)."""
        return {
            "cycle_id": self.cycle_id,
            "source": self.source,
            "status": str(self.status),
            "sites": self.sites,
            "missing": self.missing,
            "runs": [
                {
                    "site": run.site,
                    "status": str(run.status),
                    "snapshot_id": run.snapshot_id,
                    "bytes_added": run.bytes_added,
                    "duration_seconds": run.duration_seconds,
                    "error_class": run.error_class,
                    "error_message": run.error_message,
                }
                for run in self.runs
            ],
        }


def cycle_status(runs: list[Run], expected: int) -> Status:
    """success: every site succeeded; partial: every site has a snapshot; failed: a site has
    none — including a site with no run recorded at all (firebreak failed before restic)."""
    if len(runs) < expected:
        return Status.FAILED
    statuses = {run.status for run in runs}
    if statuses <= {Status.SUCCESS}:
        return Status.SUCCESS
    if statuses <= {Status.SUCCESS, Status.PARTIAL}:
        return Status.PARTIAL
    if Status.FAILED in statuses:
        return Status.FAILED
    return Status.INTERRUPTED


def run_cycle(
    rt: Runtime,
    source_name: str,
    *,
    sites: list[str] | None = None,
    trigger: str = "cli",
    cancel: threading.Event | None = None,
    retry: RetryPlan | None = None,
    notifier: CycleNotifier | None = None,
    progress: BackupProgress | None = None,
) -> CycleReport:
    """Back up a source to its sites (all of them, or the ones named) and record the cycle:
    its before hooks, its dump (if it is one), every site at once, then its after hooks,
    which run whatever happened, also when firebreak is stopping."""
    source = rt.config.sources[source_name]
    names = sites if sites is not None else list(source.sites)
    cycle_id = _start(rt, source_name, trigger, len(names))
    log.info("cycle %d of %s to %s started", cycle_id, source_name, ", ".join(names))
    if notifier is not None:
        notifier.started(source_name)
    hooks = source.hooks.effective(rt.config.hooks) if source.hooks else rt.config.hooks
    context = HookContext(source_name, cycle_id, names)
    # The after hooks undo what the before hooks did: they run whatever happens below, and
    # a stop gives them shutdown_grace counted from the moment it began (followed from now).
    with _grace(cancel, rt.kill_grace) as hooks_cancel:
        ended = replace(context, outcome=Status.FAILED, failed_sites=names)
        try:
            cycle = _Cycle(
                rt, source_name, names, cycle_id, hooks, context, cancel, retry, progress
            )
            report = cycle.back_up_and_record()
            ended = replace(context, outcome=report.status, failed_sites=report.failed_sites)
        except KeyboardInterrupt:
            ended = replace(context, outcome=Status.INTERRUPTED)
            raise
        finally:
            _after(hooks, ended, hooks_cancel)
    if notifier is not None and report.status != Status.INTERRUPTED:
        try:
            before = rt.unwritten.real(cycle_id)
            previous = previous_cycle_status(rt.engine, source_name, before, host=rt.host)
        except (*HISTORY_ERRORS, NotWrittenYet):
            previous = None  # the history is away: no "recovery" can be told
        notifier.finished(source_name, report.status, report.failed_sites, len(names), previous)
    log.info(
        "cycle %d of %s: %s (%d of %d sites succeeded)",
        cycle_id,
        source_name,
        report.status,
        report.succeeded,
        len(names),
    )
    return report


def _start(rt: Runtime, source_name: str, trigger: str, sites: int) -> int:
    """Record the cycle as running (while the history is away: its stand-in, and it runs)."""
    at = utcnow()
    start = functools.partial(
        start_cycle, source=source_name, trigger=trigger, host=rt.host, sites=sites, started_at=at
    )
    found = functools.partial(cycle_started, host=rt.host, source=source_name, at=at)
    what = f"cycle of {source_name} ({trigger}) started at {at:%Y-%m-%d %H:%M:%S}Z"
    return rt.unwritten.insert(rt.engine, start, what, found=found)


def _after(hooks: Hooks, ended: HookContext, cancel: threading.Event | None) -> None:
    """The after hooks, then the failure hooks if the cycle did not succeed."""
    run_hooks("after", hooks.after or [], ended, cancel)
    if ended.outcome != Status.SUCCESS:
        run_hooks("on_failure", hooks.on_failure or [], ended, cancel)


@contextmanager
def _grace(cancel: threading.Event | None, grace: float) -> Iterator[threading.Event | None]:
    """An event set ``grace`` seconds after ``cancel`` is (for as long as this lasts)."""
    if cancel is None:
        yield None
        return
    later = threading.Event()
    done = threading.Event()

    def follow() -> None:
        while not done.is_set():
            if cancel.wait(0.5):
                if not done.wait(grace):
                    later.set()
                return

    follower = threading.Thread(target=follow, name="hook-grace", daemon=True)
    follower.start()
    try:
        yield later
    finally:
        # Not joined: the follower sees this within half a second and ends by itself, and a
        # cycle does not wait that long for it (a `firebreak backup` would, every time).
        done.set()


@dataclass(frozen=True)
class _Cycle:
    """One cycle of a source while it backs up: what its steps share."""

    rt: Runtime
    source_name: str
    names: list[str]
    cycle_id: int
    hooks: Hooks
    context: HookContext
    cancel: threading.Event | None
    retry: RetryPlan | None
    progress: BackupProgress | None
    # Each site's last run as this process knows it (the history may not answer).
    ended: list[Run] = field(default_factory=list)

    def back_up_and_record(self) -> CycleReport:
        try:
            self.back_up_everywhere()
        except BaseException as exc:
            # A failure in firebreak itself: every site it left without a run gets one, so
            # the cycle is recorded as failed there.
            crash: Failure = InternalError(f"{type(exc).__name__} in firebreak")
            if isinstance(exc, KeyboardInterrupt):
                crash = Interrupted("stopped by an interrupt (Ctrl-C)")
            else:
                log.exception("cycle %d of %s: %s", self.cycle_id, self.source_name, crash.message)
            self.record_unrun(crash)
            self.finished()
            raise
        return self.finished()

    def back_up_everywhere(self) -> None:
        """The before hooks, the dump, then every site at once. What fails before the sites
        fails the cycle at every one of them, recorded, and no backup runs."""
        rt, source_name, names, cycle_id = self.rt, self.source_name, self.names, self.cycle_id
        failure = run_hooks("before", self.hooks.before or [], self.context, self.cancel)
        with ExitStack() as cleanup:
            stage = None
            if failure is None and rt.config.sources[source_name].dump_kind is not None:
                try:
                    stage = cleanup.enter_context(staged_dump(rt, source_name, self.cancel))
                except (DumpFailed, Interrupted) as exc:
                    failure = exc
            if failure is not None:
                log.error(
                    "cycle %d of %s: %s: %s",
                    cycle_id,
                    source_name,
                    failure.error_class,
                    failure.message,
                )
                for name in names:
                    not_run(rt, source_name, name, Operation.BACKUP, cycle_id, failure)
                return
            with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix=source_name) as pool:
                # Each site's thread in a copy of this one's context: what the cycle's caller
                # set there (the daemon relays a backup's log lines) holds for its sites.
                futures = [
                    pool.submit(
                        contextvars.copy_context().run,
                        back_up_site,
                        rt,
                        source_name,
                        name,
                        cycle_id=cycle_id,
                        cancel=self.cancel,
                        retry=self.retry,
                        stage=stage,
                        progress=self.progress,
                    )
                    for name in names
                ]
                crashed = False
                for future in futures:
                    crash = future.exception()
                    if crash is None:
                        self.ended.append(future.result())
                    else:
                        crashed = True
                        log.error(
                            "cycle %d: a site run crashed: %r", cycle_id, crash, exc_info=crash
                        )
            if crashed:  # a site whose thread failed before its run was recorded gets one
                self.record_unrun(InternalError("firebreak failed before this site's run started"))

    def record_unrun(self, failure: Failure) -> None:
        """A run for every site of the cycle that has none yet, ended in this failure."""
        ran = {run.site for run in self.recorded()}
        for name in self.names:
            if name not in ran:
                not_run(self.rt, self.source_name, name, Operation.BACKUP, self.cycle_id, failure)

    def recorded(self) -> list[Run]:
        """The cycle's runs in the history; while it is away, the ones this process saw end."""
        try:
            self.rt.unwritten.flush(self.rt.engine)
            return runs_of_cycle(self.rt.engine, self.rt.unwritten.real(self.cycle_id))
        except (*HISTORY_ERRORS, NotWrittenYet):
            return self.ended

    def finished(self) -> CycleReport:
        """The cycle's report from what its sites recorded, and the cycle recorded as ended."""
        # The last backup try at each site decides (earlier tries were retried).
        last: dict[str, Run] = {}
        for run in self.recorded():
            if run.operation == Operation.BACKUP:
                last[run.site] = run
        runs = [last[name] for name in self.names if name in last]
        status = cycle_status(runs, expected=len(self.names))
        report = CycleReport(
            cycle_id=self.cycle_id,
            source=self.source_name,
            status=status,
            runs=runs,
            sites=self.names,
        )
        at, succeeded = utcnow(), report.succeeded
        unwritten = self.rt.unwritten

        def end(engine: Engine) -> None:
            cycle_id = unwritten.real(self.cycle_id)
            finish_cycle(engine, cycle_id, status=status, succeeded=succeeded, at=at)

        what = f"cycle {self.cycle_id} of {self.source_name} ended {status} at {at:%H:%M:%S}Z"
        self.rt.unwritten.write(self.rt.engine, end, what)
        return report
