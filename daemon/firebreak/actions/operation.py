"""One restic operation at one site, recorded: the steps backup, check, retention, drills and
restore share.

``at_site`` takes the site's lock (unless the operation must not wait for one) and a run slot,
removes a stale lock an earlier run left, records the run as ``running``, resolves the site's
access, lets the operation do its work, and records how it ended, also when the work raised.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

from firebreak.actions.flocks import LockWaitCancelled, site_lock
from firebreak.actions.identity import Witness
from firebreak.actions.recording import RunRecord
from firebreak.actions.runtime import RunLog, RunSlots, Runtime
from firebreak.config.references import UnresolvedReference
from firebreak.history.latest import site_is_lost
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome, left_a_lock
from firebreak.history.unwritten import HISTORY_ERRORS, NotWrittenYet, refusal
from firebreak.outcomes import (
    Failure,
    HistoryUnavailable,
    InternalError,
    Interrupted,
    Operation,
    SiteConfigError,
    Status,
    leaves_stale_lock,
)
from firebreak.placement.targets import is_local
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import Snapshot, snapshot_list
from firebreak.restic.progress import IoCounters
from firebreak.restic.result import ResticResult

logger = logging.getLogger(__name__)

# The operation's own work: given the site's access and a logger that names the run,
# run restic and say how it went.
Work = Callable[[SiteAccess, RunLog], RunOutcome]


def run_restic(
    rt: Runtime,
    invocation: runner.Invocation,
    access: SiteAccess,
    cancel: threading.Event | None,
    *,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    on_message: Callable[[Any], None] | None = None,
    on_io: Callable[[IoCounters], None] | None = None,
    give_up: Callable[[str], bool] | None = None,
    kill_grace: float | None = None,
    started: subprocess.Popen[bytes] | None = None,
) -> ResticResult:
    """restic at the site, within the site's timeout and stall timeout. kill_grace: how long
    restic gets after SIGINT (default: the daemon's shutdown_grace); started: this
    invocation's restic, already started (actions/head_start.py)."""
    site = access.site
    return runner.run(
        invocation,
        timeout=site.timeout.total_seconds(),
        stall_timeout=site.stall_timeout.total_seconds(),
        cancel=cancel,
        kill_grace=rt.kill_grace if kill_grace is None else kill_grace,
        on_status=on_status,
        on_message=on_message,
        on_io=on_io,
        give_up=give_up,
        started=started,
    )


def source_snapshots(
    rt: Runtime,
    access: SiteAccess,
    source: str,
    cancel: threading.Event | None,
    *,
    every_host: bool = False,
) -> list[Snapshot] | RunOutcome:
    """This host's snapshots of the source at the site (every host's with every_host: a
    repository may hold another host's source of the same name), oldest first, or how
    asking for them failed."""
    host = None if every_host else rt.host
    listed = run_restic(
        rt,
        commands.snapshots(rt.restic_at(access), source_name=source, host=host),
        access,
        cancel,
    )
    error = classify(listed)
    return snapshot_list(listed) if error is None else RunOutcome.failed(error, listed.exit_code)


def at_site(
    rt: Runtime,
    source: str | None,
    site_name: str,
    operation: Operation,
    work: Work,
    *,
    cycle_id: int | None = None,
    cancel: threading.Event | None = None,
    exclusive: bool = True,
) -> Run:
    """Do one recorded operation at a site and return its finished run.

    exclusive: wait for the site's lock (shared with the CLI) and a run slot. A restore does
    not: it must never queue behind a backup during an incident, and restic's own locks let
    it read beside one.

    Every run but a site reset also checks that the repository it met is the one the site
    held (actions/identity.py): a missing one is lost, another one replaced.
    """
    try:
        with _site_turn(rt, source, site_name, operation, cancel, exclusive):
            if exclusive and _lock_may_be_left(rt, site_name):
                unlock(rt, source, site_name, cycle_id, cancel)
            record = RunRecord.start(rt, operation, source, site_name, cycle_id)
            run_id = record.run_id
            log = RunLog(logger, {"source": source, "site": site_name, "run_id": run_id})

            def attempt() -> RunOutcome:
                if operation is Operation.RESET:
                    return _resolved(rt, site_name, log, work)
                witness = Witness(rt, site_name, tidy=exclusive)
                checked = _rechecked(rt, witness, work, cancel) if exclusive else work
                done = _resolved(rt, site_name, log, checked)
                try:
                    rt.unwritten.flush(rt.engine)  # a run that started while it was away
                    return witness.judge(operation, done, rt.unwritten.real(run_id))
                except (*HISTORY_ERRORS, NotWrittenYet):
                    # The history is away: the repository restic met is compared with the
                    # recorded one at the next run.
                    log.warning("the history is unavailable: the repository is judged next time")
                    return done

            outcome = _guarded(record, attempt)
            if leaves_stale_lock(outcome.error_class):
                rt.needs_unlock.add(site_name)
            return record.end(outcome)
    except LockWaitCancelled as exc:
        stopped = RunOutcome.failed(Interrupted(str(exc)))
        return RunRecord.start(rt, operation, source, site_name, cycle_id).end(stopped)


@contextmanager
def _site_turn(
    rt: Runtime,
    source: str | None,
    site: str,
    operation: Operation,
    cancel: threading.Event | None,
    exclusive: bool,
) -> Iterator[None]:
    if not exclusive:
        yield
        return
    purpose = f"{operation} of {source}" if source else str(operation)
    # A local run waits for its own slot before it takes one of all runs, so that waiting
    # it holds none a network-bound run could use.
    configured = rt.config.sites.get(site)
    local = configured is not None and is_local(configured)
    with (
        site_lock(rt.locks_dir, site, purpose, cancel),
        _slot(rt.local_slots, cancel, site) if local else nullcontext(),
        _slot(rt.run_slots, cancel, site),
    ):
        yield


@contextmanager
def _slot(slots: RunSlots, cancel: threading.Event | None, site: str) -> Iterator[None]:
    """A run slot, waited for until it is free or the run is stopped."""
    if not slots.take(cancel):
        raise LockWaitCancelled(f"stopped while waiting for a run slot for site {site}")
    try:
        yield
    finally:
        slots.release()


def _rechecked(rt: Runtime, witness: Witness, work: Work, cancel: threading.Event | None) -> Work:
    """The work, preceded by a look at the site's repository where it is in doubt, so that
    nothing is written to a repository that is not the site's (a repository open, only there):
    a site found lost before, and one whose repository was never recorded though this host
    wrote to it (a history from before repositories were recorded)."""

    def checked(access: SiteAccess, log: RunLog) -> RunOutcome:
        at = rt.restic_at(access)
        try:
            lost = site_is_lost(rt.engine, rt.host, witness.site)
        except HISTORY_ERRORS:
            lost = True  # the history is away: in doubt, look
        unconfirmed = witness.unconfirmed_snapshot()
        if unconfirmed is not None:
            asked = run_restic(rt, commands.cat_snapshot(at, unconfirmed), access, cancel)
            verdict = witness.recheck(asked, snapshot=unconfirmed)
            if verdict is not None:
                return verdict
        elif witness.expected is not None and lost:
            asked = run_restic(rt, commands.cat_config(at), access, cancel)
            verdict = witness.recheck(asked)
            if verdict is not None:
                return verdict
            log.info("the site's repository is back")
        return work(access, log)

    return checked


def _resolved(rt: Runtime, site_name: str, log: RunLog, work: Work) -> RunOutcome:
    """The work, given the site's access; a reference that cannot be resolved is the run's
    outcome (a config error), not an exception."""
    try:
        access = resolve_site(site_name, rt.config.sites[site_name])
    except UnresolvedReference as exc:
        return RunOutcome.failed(SiteConfigError(f"sites.{site_name}: {exc}"))
    return work(access, log)


def _guarded(record: RunRecord, work: Callable[[], RunOutcome]) -> RunOutcome:
    """The work's outcome; whatever it raises, the run is recorded as ended first."""
    try:
        return work()
    except Failure as exc:  # restic could not be started: say why, not "crashed"
        return RunOutcome.failed(exc)
    except HISTORY_ERRORS as exc:  # the history, asked before restic ran, did not answer
        return RunOutcome.failed(HistoryUnavailable(refusal(exc)))
    except NotWrittenYet as exc:  # a row that started while it was away is asked for
        return RunOutcome.failed(HistoryUnavailable(str(exc)))
    except BaseException as exc:
        crashed = RunOutcome.failed(InternalError(f"{type(exc).__name__} in firebreak"))
        if isinstance(exc, KeyboardInterrupt):
            crashed = replace(crashed, status=Status.INTERRUPTED)
        record.end(crashed)
        raise


def _lock_may_be_left(rt: Runtime, site_name: str) -> bool:
    """A run of this process, or one the history holds (the daemon's, seen by a CLI check;
    one from before a restart), was stopped at the site or met a lock there. While the history
    is away: maybe (``restic unlock`` removes stale locks only)."""
    if site_name in rt.needs_unlock:
        return True
    try:
        return left_a_lock(rt.engine, rt.host, site_name)
    except HISTORY_ERRORS:
        return True


def unlock(
    rt: Runtime,
    source: str | None,
    site_name: str,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> None:
    """``restic unlock`` (stale locks only) after a run that was stopped or hit a lock."""
    try:
        access = resolve_site(site_name, rt.config.sites[site_name])
    except UnresolvedReference:
        return  # the operation itself reports it
    logger.info("%s: removing stale locks left by an earlier run (restic unlock)", site_name)
    invocation = commands.unlock(rt.restic_at(access))
    unlocked = side_run(rt, Operation.UNLOCK, source, access, invocation, cycle_id, cancel)
    if unlocked.status == Status.SUCCESS:
        rt.needs_unlock.discard(site_name)


def side_run(
    rt: Runtime,
    operation: Operation,
    source: str | None,
    access: SiteAccess,
    invocation: runner.Invocation,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> Run:
    """A housekeeping restic operation (init, unlock) at the site, recorded as its own run;
    returns that run, finished."""
    record = RunRecord.start(rt, operation, source, access.name, cycle_id)

    def once() -> RunOutcome:
        result = run_restic(rt, invocation, access, cancel)
        error = classify(result)
        if error is not None:
            return RunOutcome.failed(error, result.exit_code)
        initialized = operation == Operation.INIT
        return RunOutcome(Status.SUCCESS, exit_code=0, repository_initialized=initialized)

    return record.end(_guarded(record, once))


def create_repository(
    rt: Runtime,
    source: str | None,
    access: SiteAccess,
    cycle_id: int | None,
    cancel: threading.Event | None,
) -> RunOutcome | None:
    """``restic init`` at the site, recorded as a run of its own. None when it worked;
    otherwise how the run that needed the repository ends."""
    init = commands.init(rt.restic_at(access))
    created = side_run(rt, Operation.INIT, source, access, init, cycle_id, cancel)
    if created.status == Status.SUCCESS:
        return None
    return RunOutcome(
        Status(created.status),
        exit_code=created.exit_code,
        error_class=created.error_class,
        error_message=f"creating the repository failed: {created.error_message}",
    )


def not_run(
    rt: Runtime,
    source: str,
    site: str,
    operation: Operation,
    cycle_id: int | None,
    failure: Failure,
) -> Run:
    """A run that never reached the site, because what had to come first failed (a before
    hook, the dump): recorded like any other, so that freshness, the metrics and the alerts
    see it at every site."""
    return RunRecord.start(rt, operation, source, site, cycle_id).end(RunOutcome.failed(failure))
