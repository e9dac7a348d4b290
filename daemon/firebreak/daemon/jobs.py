"""The work the daemon's scheduler runs: one method per kind of job (a source's cycle, its
retention, a site's check and restore drill), and the table of jobs a config asks for.

Each job reads the runtime afresh (a reload swaps it), runs at most once per source at a time,
and never lets an exception reach the scheduler: a failure inside firebreak is logged with
its traceback, and the run it interrupted is recorded as such by the actions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import text

from firebreak.actions.backup import BackupProgress, RetryPlan
from firebreak.actions.check import check_site
from firebreak.actions.cycle import CycleReport, run_cycle
from firebreak.actions.immutability import prove_immutable
from firebreak.actions.prune import prune_history
from firebreak.actions.restore_drill import drill_site
from firebreak.actions.retention import apply_retention
from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.config import Config
from firebreak.config.schedules import parse_schedule
from firebreak.daemon.schedules import period
from firebreak.history.coordination import shared
from firebreak.history.unwritten import HISTORY_ERRORS, refusal
from firebreak.notify.sender import CycleNotifier

log = logging.getLogger(__name__)

# Jobs built from the config (replaced on reload), by the prefix of their id.
SCHEDULED_KINDS = ("cycle:", "retention:", "check:", "drill:", "history:")

# How often the daemon prunes the history (database.keep_runs).
PRUNE_SCHEDULE = "every 1h"


class Job(NamedTuple):
    """One scheduled job the config asks for."""

    id: str
    label: str
    function: Callable[..., None]
    args: tuple[str, ...]
    schedule: str


class Jobs:
    def __init__(
        self,
        runtime: Callable[[], Runtime],
        cancel: threading.Event,
        next_cycle: Callable[[str], datetime | None],
        cycle_ended: Callable[[], None],
    ) -> None:
        """runtime: the current runtime. cancel: set to stop every running restic.
        next_cycle: when the source's next scheduled cycle starts (retries stop before it).
        cycle_ended: called after every cycle (the daemon updates its status)."""
        self._runtime = runtime
        self._cancel = cancel
        self._next_cycle = next_cycle
        self._cycle_ended = cycle_ended
        # Sources with a cycle running: how many (a scheduled one, and any asked for).
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def planned(self, config: Config) -> list[Job]:
        """Every job the config asks for: one table, one way to add them."""
        jobs = []
        for name, source in config.sources.items():
            cycle = (name, "schedule")
            jobs.append(
                Job(f"cycle:{name}", f"cycle of {name}", self.cycle, cycle, source.schedule)
            )
            if source.retention is not None:
                label, schedule = f"retention of {name}", source.retention.schedule
                jobs.append(Job(f"retention:{name}", label, self.retention, (name,), schedule))
        for name, site in config.sites.items():
            if site.check_schedule is not None:
                label, schedule = f"check of {name}", site.check_schedule
                jobs.append(Job(f"check:{name}", label, self.check, (name,), schedule))
            if site.drill_schedule is not None:
                label, schedule = f"restore drill at {name}", site.drill_schedule
                jobs.append(Job(f"drill:{name}", label, self.drill, (name,), schedule))
            if site.append_only and site.immutability_schedule is not None:
                label, schedule = f"immutability proof at {name}", site.immutability_schedule
                jobs.append(
                    Job(f"immutability:{name}", label, self.immutability, (name,), schedule)
                )
        if config.database.keep_runs is not None:
            label = "pruning of the run history"
            jobs.append(Job("history:prune", label, self.prune, (), PRUNE_SCHEDULE))
        return jobs

    # -- what is running ----------------------------------------------------------------

    def running(self) -> list[str]:
        """Sources whose cycle is running now."""
        with self._lock:
            return sorted(self._running)

    def wait_until_idle(self, seconds: float) -> list[str]:
        """Wait up to seconds for running cycles to end; the ones still running."""
        deadline = time.monotonic() + seconds
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(0.5)
            return sorted(self._running)

    # -- the jobs -----------------------------------------------------------------------

    def cycle(self, source_name: str, trigger: str) -> None:
        rt = self._runtime()
        if source_name not in rt.config.sources:
            return  # removed by a reload
        with self._lock:
            if source_name in self._running:
                log.info("%s: a cycle is still running; this one is skipped", source_name)
                return
            self._running[source_name] += 1
        try:
            with _reported(f"cycle of {source_name}"):
                retry = self._retry_plan(rt, source_name)
                # Its webhooks and pings go out in their own threads, never holding the cycle.
                notifier = CycleNotifier(rt.config)
                run_cycle(
                    rt,
                    source_name,
                    trigger=trigger,
                    cancel=self._cancel,
                    retry=retry,
                    notifier=notifier,
                )
        finally:
            self._ended(source_name)

    def asked(
        self,
        source_name: str,
        sites: list[str] | None,
        cancel: threading.Event,
        progress: BackupProgress | None,
    ) -> CycleReport:
        """A cycle ``firebreak backup`` asked the daemon for (daemon/control.py), as that
        command would run it itself: not retried, its own cancel (the caller's Ctrl-C, or
        the daemon stopping). Counted as running: a stop waits for it, and a scheduled
        cycle of the source due meanwhile is skipped. Raises what run_cycle raises."""
        rt = self._runtime()
        with self._lock:
            self._running[source_name] += 1
        try:
            notifier = CycleNotifier(rt.config)
            return run_cycle(
                rt, source_name, sites=sites, cancel=cancel, notifier=notifier, progress=progress
            )
        finally:
            self._ended(source_name)

    def _ended(self, source_name: str) -> None:
        with self._idle:
            self._running[source_name] -= 1
            if self._running[source_name] <= 0:
                del self._running[source_name]
            self._idle.notify_all()
        self._cycle_ended()

    def check(self, site_name: str) -> None:
        rt = self._runtime()
        if not _in_use(rt, site_name):
            return  # no source uses the site (or a reload removed it)
        with _reported(f"check of {site_name}"):
            _history_answers(rt)
            schedule = rt.config.sites[site_name].check_schedule
            since = None if schedule is None else done_since(rt, schedule)
            check_site(rt, site_name, self._cancel, done_since=since)

    def drill(self, site_name: str) -> None:
        rt = self._runtime()
        for name, source in rt.config.sources.items():
            if site_name not in source.sites or self._cancel.is_set():
                continue
            with _reported(f"restore drill of {name} at {site_name}"):
                _history_answers(rt)
                drill_site(rt, name, site_name, self._cancel)

    def immutability(self, site_name: str) -> None:
        rt = self._runtime()
        if not _in_use(rt, site_name):
            return  # no source uses the site (or a reload removed it)
        with _reported(f"immutability proof at {site_name}"):
            _history_answers(rt)
            prove_immutable(rt, site_name, self._cancel)

    def retention(self, source_name: str) -> None:
        rt = self._runtime()
        source = rt.config.sources.get(source_name)
        if source is None or source.retention is None:
            return  # removed by a reload
        with _reported(f"retention of {source_name}"):
            _history_answers(rt)
            since = done_since(rt, source.retention.schedule)
            apply_retention(rt, source_name, cancel=self._cancel, done_since=since)

    def prune(self) -> None:
        rt = self._runtime()
        keep = rt.config.database.keep_runs
        if keep is None:
            return  # turned off by a reload
        with _reported("pruning the run history"):  # the next hour tries again
            prune_history(rt.engine, rt.host, keep, self._cancel)

    def _retry_plan(self, rt: Runtime, source_name: str) -> RetryPlan:
        """Retries stop before the source's next scheduled cycle would start."""
        retry = rt.config.retry
        deadline = None
        upcoming = self._next_cycle(source_name)
        if upcoming is not None:
            left = (upcoming - datetime.now(upcoming.tzinfo)).total_seconds()
            deadline = time.monotonic() + max(left - 1.0, 0.0)
        return RetryPlan(
            attempts=retry.attempts,
            initial_delay=retry.initial_delay.total_seconds(),
            max_delay=retry.max_delay.total_seconds(),
            deadline=deadline,
        )


def _in_use(rt: Runtime, site_name: str) -> bool:
    """Whether a source of the current config backs up to the site."""
    return any(site_name in source.sites for source in rt.config.sources.values())


def _history_answers(rt: Runtime) -> None:
    """Maintenance (checks, drills, forgets) waits for the history: it coordinates through it
    and judges by it. Raises the history's error while it is away."""
    with rt.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def done_since(rt: Runtime, schedule: str) -> datetime | None:
    """Since when a prune or check that a host sharing the repository did counts as this
    schedule's: half its period ago (the hosts' runs of one scheduled time start within their
    jitter of each other; the previous time's ended long before). None on a history of one
    host (SQLite): its scheduled runs always run."""
    if not shared(rt.engine):
        return None
    now = utcnow()
    gap = period(parse_schedule(schedule), now, ZoneInfo(rt.config.timezone))
    return now - gap / 2


@contextmanager
def _reported(job: str) -> Iterator[None]:
    """A scheduled job whose failure is logged, never raised into the scheduler: the history
    away in one line (the job runs again when it is due), anything else with its traceback."""
    try:
        yield
    except HISTORY_ERRORS as exc:
        log.error("%s stopped: the history is unavailable (%s)", job, refusal(exc))
    except Exception:
        log.exception("%s failed inside firebreak", job)
