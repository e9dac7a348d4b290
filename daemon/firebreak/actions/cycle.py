"""A cycle: one backup of one source to all of its sites, concurrently.

Each site runs in its own thread, bounded by the runtime's run slots; one site's failure,
hang or timeout is recorded for that site and never stops or delays the others.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace

from firebreak.actions.backup import RetryPlan, back_up_site
from firebreak.actions.dumps import staged_dump
from firebreak.actions.hooks import HookContext, run_hooks
from firebreak.actions.operation import not_run
from firebreak.actions.runtime import Runtime
from firebreak.config.hooks import Hooks
from firebreak.history.models import Run
from firebreak.history.records import (
    finish_cycle,
    previous_cycle_status,
    runs_of_cycle,
    start_cycle,
)
from firebreak.notify.sender import CycleNotifier
from firebreak.outcomes import DumpFailed, Interrupted, Operation, Status

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
) -> CycleReport:
    """Back up a source to its sites (all of them, or the ones named) and record the cycle:
    its before hooks, its dump (if it is one), every site at once, then its after hooks."""
    source = rt.config.sources[source_name]
    names = sites if sites is not None else list(source.sites)
    cycle_id = start_cycle(
        rt.engine, source=source_name, trigger=trigger, host=rt.host, sites=len(names)
    )
    log.info("cycle %d of %s to %s started", cycle_id, source_name, ", ".join(names))
    if notifier is not None:
        notifier.started(source_name)
    hooks = source.hooks.effective(rt.config.hooks) if source.hooks else rt.config.hooks
    context = HookContext(source_name, cycle_id, names)
    _back_up_everywhere(rt, source_name, names, cycle_id, hooks, context, cancel, retry)
    # The last backup try at each site decides (earlier tries were retried).
    last: dict[str, Run] = {}
    for run in runs_of_cycle(rt.engine, cycle_id):
        if run.operation == Operation.BACKUP:
            last[run.site] = run
    runs = [last[name] for name in names if name in last]
    status = cycle_status(runs, expected=len(names))
    succeeded = sum(1 for run in runs if run.status == Status.SUCCESS)
    finish_cycle(rt.engine, cycle_id, status=status, succeeded=succeeded)
    report = CycleReport(
        cycle_id=cycle_id, source=source_name, status=status, runs=runs, sites=names
    )
    failed = [run.site for run in report.failed] + report.missing
    ended = replace(context, outcome=status, failed_sites=failed)
    run_hooks("after", hooks.after or [], ended, cancel)
    if status != Status.SUCCESS:
        run_hooks("on_failure", hooks.on_failure or [], ended, cancel)
    if notifier is not None and status != Status.INTERRUPTED:
        previous = previous_cycle_status(rt.engine, source_name, cycle_id)
        notifier.finished(source_name, status, failed, len(names), previous)
    log.info(
        "cycle %d of %s: %s (%d of %d sites succeeded)",
        cycle_id,
        source_name,
        status,
        succeeded,
        len(names),
    )
    return report


def _back_up_everywhere(
    rt: Runtime,
    source_name: str,
    names: list[str],
    cycle_id: int,
    hooks: Hooks,
    context: HookContext,
    cancel: threading.Event | None,
    retry: RetryPlan | None,
) -> None:
    """The before hooks, the dump, then every site at once. What fails before the sites fails
    the cycle at every one of them, recorded, and no backup runs."""
    failure = run_hooks("before", hooks.before or [], context, cancel)
    with ExitStack() as cleanup:
        stage = None
        if failure is None and rt.config.sources[source_name].dump_kind is not None:
            try:
                stage = cleanup.enter_context(staged_dump(rt, source_name, cancel))
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
            futures = [
                pool.submit(
                    back_up_site,
                    rt,
                    source_name,
                    name,
                    cycle_id=cycle_id,
                    cancel=cancel,
                    retry=retry,
                    stage=stage,
                )
                for name in names
            ]
            for future in futures:
                crash = future.exception()
                if crash is not None:
                    log.error("cycle %d: a site run crashed: %r", cycle_id, crash, exc_info=crash)
