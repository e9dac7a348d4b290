"""``firebreak run``: the daemon.

Start: config, placement policy, restic, database (READY=1 only after all of them), runs left
``running`` by a killed daemon marked interrupted, jobs from the config, overdue sources caught
up at once (staggered). Then: cycles on schedule, a heartbeat (WATCHDOG=1, STATUS=), a
catch-up check every minute (a machine that slept). SIGHUP reloads, SIGTERM/SIGINT stop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from firebreak import __version__
from firebreak.actions.dumps import remove_leftover_stages
from firebreak.actions.identity import recall_repositories
from firebreak.actions.restore import recorded_newest, site_order
from firebreak.actions.runtime import Runtime
from firebreak.clock import utcnow
from firebreak.config import Config, ConfigError, load_config
from firebreak.config.schedules import parse_schedule
from firebreak.daemon.catchup import overdue_sources
from firebreak.daemon.control import Accepted, Caller, ControlServer, relaying
from firebreak.daemon.jobs import SCHEDULED_KINDS, Jobs
from firebreak.daemon.overview import document, overview
from firebreak.daemon.preflight import ReloadStatus, StartupError, preflight, verify_placement
from firebreak.daemon.systemd import Notifier
from firebreak.daemon.triggers import trigger
from firebreak.fleet import HostProfile
from firebreak.history import hosts
from firebreak.history.records import interrupt_leftovers
from firebreak.history.unwritten import HISTORY_ERRORS, refusal
from firebreak.humanize import humanize_age, plural
from firebreak.metrics.collector import ScrapeInputs
from firebreak.metrics.exporter import database_ready, serve
from firebreak.metrics.http import MetricsServer
from firebreak.placement.check import check_placement

log = logging.getLogger(__name__)

CATCH_UP_CHECK_SECONDS = 60.0
HEARTBEAT_SECONDS = 30.0
SHUTDOWN_MARGIN_SECONDS = 15.0


class Daemon:
    def __init__(self, config_path: Path, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.stop_requested = threading.Event()
        self.cancel = threading.Event()  # reaches every running restic
        self.reload_requested = threading.Event()
        self.reload_status: ReloadStatus | None = None
        self.jobs = Jobs(lambda: self.rt, self.cancel, self._next_cycle, self._cycle_ended)
        self.rt: Runtime
        self.scheduler: BackgroundScheduler
        self.metrics: MetricsServer
        self.control: ControlServer
        self.started_at = utcnow()
        self.beat_failing = False

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        try:
            config, self.rt = preflight(self.config_path)
        except StartupError as exc:
            for line in str(exc).splitlines():
                log.error("%s", line)
            return exc.code
        recovered = interrupt_leftovers(self.rt.engine, self.rt.host, _still_running)
        for run in recovered:
            log.warning(
                "run %d (%s → %s) was left running by an earlier firebreak: marked interrupted",
                run.id,
                run.source,
                run.site,
            )
            self.rt.needs_unlock.add(run.site)
        remove_leftover_stages(self.rt)
        recall_repositories(self.rt)  # backups go on knowing them if the history goes away
        self._beat()
        try:
            self.metrics = serve(
                config.metrics,
                ScrapeInputs(
                    config=lambda: self.rt.config,
                    engine=lambda: self.rt.engine,
                    restic_version=lambda: str(self.rt.restic_version),
                    reload_ok=lambda: None if self.reload_status is None else self.reload_status.ok,
                    host=lambda: self.rt.host,
                    unwritten=lambda: len(self.rt.unwritten),
                ),
                healthy=self._healthy,
                ready=database_ready(lambda: self.rt.engine),
            )
        except OSError as exc:
            log.error("cannot serve metrics on %s: %s", config.metrics.listen, exc.strerror)
            return 5
        self.control = ControlServer(
            config.state_dir,
            lambda: self.rt.config.fingerprint,
            self._status_document,
            backup=self._asked_backup,
            stopping=self.cancel,
            restore=self._asked_restore,
        )
        try:
            self.control.start()
        except OSError as exc:  # status reads the history itself, as without a daemon
            log.warning("cannot listen on %s: %s", self.control.path, exc.strerror or exc)
        self._install_signals()
        self.scheduler = self._new_scheduler(config)
        self._schedule_sources(config)
        self._catch_up(initial=True)
        # The heartbeats keep time by the monotonic clock, each in a thread of its own (not
        # as APScheduler jobs, which follow the wall clock: one set back would stop systemd's
        # watchdog pings, and systemd would kill a daemon that is fine): busy cycles must not
        # make a host look silent, and a slow database must not delay the watchdog.
        every = HEARTBEAT_SECONDS
        if self.notifier.watchdog_seconds:
            every = min(every, self.notifier.watchdog_seconds / 2)
        self._every(lambda: every, self._heartbeat, "heartbeat")
        self._every(lambda: self.rt.config.daemon.heartbeat.total_seconds(), self._beat, "beat")
        self.scheduler.start()
        self.notifier.notify("READY=1", f"STATUS={self.status_line()}")
        log.info("firebreak daemon ready: %s", self.status_line())
        last_check = time.monotonic()
        while not self.stop_requested.wait(1.0):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            if time.monotonic() - last_check >= CATCH_UP_CHECK_SECONDS:
                last_check = time.monotonic()
                self.rt.unwritten.flush(self.rt.engine)  # what ended while it was away
                self._catch_up(initial=False)
        self._shutdown()
        return 0

    def _every(self, seconds: Callable[[], float], beat: Callable[[], None], name: str) -> None:
        """beat() every seconds() by the monotonic clock, until the daemon stops."""

        def loop() -> None:
            while not self.stop_requested.wait(seconds()):
                try:
                    beat()
                except Exception:
                    log.exception("the %s failed", name)

        threading.Thread(target=loop, name=name, daemon=True).start()

    def _status_document(self) -> dict[str, Any]:
        """What ``firebreak status --json`` would print here, for the control socket."""
        rt = self.rt
        return document(overview(rt.config, rt.engine, utcnow()))

    def _asked_restore(self, asked: dict[str, Any]) -> dict[str, Any] | str:
        """``firebreak restore`` asked where it starts: the site it tries first and the newest
        snapshot the history recorded there, read as the command would read them, so that it
        can start restic before it has loaded the rest of firebreak (actions/head_start.py).
        Raises what the history raises."""
        rt = self.rt  # one config throughout, whatever a reload does meanwhile
        source, site = asked.get("source"), asked.get("site")
        if not isinstance(source, str) or not isinstance(site, str | None):
            return "source and site are names"
        if source not in rt.config.sources or (
            site is not None and site not in rt.config.sources[source].sites
        ):
            return "a source or site this config does not have"
        first = next(iter(site_order(rt, source, site, quiet=True)), None)
        newest = recorded_newest(rt, source, first) if first is not None else None
        return {"site": first, "snapshot": newest.id if newest is not None else None}

    def _asked_backup(self, asked: dict[str, Any]) -> Accepted | str:
        """``firebreak backup`` asked over the control socket: its cycles, one source after
        another as that command runs them; or why not (a name this config does not have, a
        placement refusal), and the command runs them itself. (The control socket refuses
        on its own once the daemon is stopping: it watches self.cancel.)"""
        config = self.rt.config
        sources, sites = asked.get("sources"), asked.get("sites")
        if not isinstance(sources, list) or not isinstance(sites, list):
            return "sources and sites are lists of names"
        names = list(dict.fromkeys(config.sources if asked.get("all") else sources))
        chosen = list(dict.fromkeys(sites)) or None
        if not names or any(
            name not in config.sources or not set(chosen or ()) <= set(config.sources[name].sites)
            for name in names
        ):
            return "a source or site this config does not have"
        placement = check_placement(
            config, sources=names, resolve_hosts=False, probe_repositories=False
        )
        if placement.errors:
            return "the placement policy refuses it"

        def run(caller: Caller) -> None:
            log.info("firebreak backup of %s asked on the control socket", ", ".join(names))
            progress = caller.progress if asked.get("progress") else None
            reports, skipped = [], []
            try:
                with relaying(caller, asked.get("verbose")):
                    for name in names:
                        if caller.cancel.is_set():
                            break
                        source = self.rt.config.sources.get(name)
                        if source is None or not set(chosen or ()) <= set(source.sites):
                            log.warning("%s: not backed up: a reload removed it", name)
                            skipped.append(name)
                            continue
                        cycle = self.jobs.asked(name, chosen, caller.cancel, progress)
                        reports.append(cycle.document())
            except HISTORY_ERRORS as exc:
                caller.say({"error": f"the history database failed: {refusal(exc)}", "code": 5})
                return
            interrupted = caller.cancel.is_set()
            caller.say({"reports": reports, "skipped": skipped, "interrupted": interrupted})

        where = asked.get("where") or self.config_path
        return Accepted(placement.lines(where), run)

    def _healthy(self) -> tuple[bool, str]:
        if self.stop_requested.is_set():
            return False, "stopping"
        if not getattr(self, "scheduler", None) or not self.scheduler.running:
            return False, "scheduler not running"
        return True, self.status_line()

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received: stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _shutdown(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping: interrupting running restic")
        self.control.stop_listening()  # a command asking now backs up itself
        self.cancel.set()
        # Not shutdown(wait=True): APScheduler holds its job store lock while it waits, and
        # a finishing job may need it. Running cycles are counted by the daemon itself.
        self.scheduler.shutdown(wait=False)
        log.info("waiting for running cycles to stop (restic gets %.0fs)", self.rt.kill_grace)
        left = self.jobs.wait_until_idle(self.rt.kill_grace + SHUTDOWN_MARGIN_SECONDS)
        if left:
            log.error("cycles still running at exit: %s", ", ".join(left))
        if not self.rt.unwritten.flush(self.rt.engine, wait=True):
            for what in self.rt.unwritten.abandoned():  # the journal keeps them
                log.error("never written to the history (it did not answer): %s", what)
        self.metrics.stop()
        self.control.close()
        self._beat_stopped(self.rt.host)
        log.info("firebreak daemon stopped")

    # -- scheduling ----------------------------------------------------------------------

    def _new_scheduler(self, config: Config) -> BackgroundScheduler:
        return BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={
                # Cycles wait on run slots and site locks, not on these threads.
                "default": ThreadPoolExecutor(max_workers=max(4, 2 * len(config.sources))),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(config.daemon.misfire_grace_time.total_seconds()),
            },
            timezone=ZoneInfo(config.timezone),
        )

    def _schedule_sources(self, config: Config) -> None:
        zone = ZoneInfo(config.timezone)
        for job in self.scheduler.get_jobs():
            if job.id.startswith(SCHEDULED_KINDS):
                job.remove()
        for job in self.jobs.planned(config):
            self.scheduler.add_job(
                job.function,
                trigger(parse_schedule(job.schedule), zone, config.daemon.jitter),
                args=job.args,
                id=job.id,
                name=job.label,
                replace_existing=True,
            )

    def _catch_up(self, *, initial: bool) -> None:
        config = self.rt.config
        try:
            due = overdue_sources(config, self.rt.engine, utcnow(), self.rt.host)
        except HISTORY_ERRORS as exc:  # the history is away: the next minute asks again
            log.warning("catch-up check skipped: the history is unavailable (%s)", refusal(exc))
            return
        except Exception:
            log.exception("catch-up check failed")
            return
        stagger = config.daemon.catch_up_stagger.total_seconds()
        delay = 0.0
        running = self.jobs.running()
        for name in due:
            if name in running:
                continue
            if self.scheduler.get_job(f"catch-up:{name}") is not None:
                continue
            log.info(
                "%s is overdue%s: catching up%s",
                name,
                " at start" if initial else "",
                f" in {delay:.0f}s" if delay else "",
            )
            when = datetime.now(ZoneInfo(config.timezone)) + timedelta(seconds=delay)
            self.scheduler.add_job(
                self.jobs.cycle,
                DateTrigger(when),
                args=(name, "catch-up"),
                id=f"catch-up:{name}",
                name=f"catch-up of {name}",
                misfire_grace_time=None,
            )
            delay += stagger

    def _next_cycle(self, source_name: str) -> datetime | None:
        job = self.scheduler.get_job(f"cycle:{source_name}")
        return None if job is None else job.next_run_time

    def _cycle_ended(self) -> None:
        if not self.stop_requested.is_set():
            self.notifier.notify(f"STATUS={self.status_line()}")

    def _heartbeat(self) -> None:
        """STATUS=, and WATCHDOG=1 while the scheduler runs (one that died stops the pings,
        and systemd restarts the service)."""
        fields = [f"STATUS={self.status_line()}"]
        if self.notifier.watchdog_seconds and self.scheduler.running:
            fields.insert(0, "WATCHDOG=1")
        self.notifier.notify(*fields)

    def _beat(self) -> None:
        """Record in the history that this host's daemon is alive, and what its sources ask
        (a fleet exporter judges them by it). A history that cannot be written is said once,
        until it can again: the backups go on."""
        rt = self.rt
        try:
            hosts.beat(
                rt.engine,
                rt.host,
                started_at=self.started_at,
                interval=rt.config.daemon.heartbeat,
                version=__version__,
                pid=os.getpid(),
                profile=HostProfile.of(rt.config, utcnow()).to_json(),
            )
        except Exception as exc:
            if not self.beat_failing:
                # The driver's first line: not the statement, with its profile, after it.
                said = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""]
                log.warning("cannot record the heartbeat in the run history: %s", said[0])
            self.beat_failing = True
            return
        if self.beat_failing:
            log.info("the heartbeat is recorded again")
        self.beat_failing = False

    def _beat_stopped(self, host: str) -> None:
        try:
            hosts.stopped(self.rt.engine, host)
        except Exception as exc:
            log.warning("cannot record in the run history that %s stopped: %s", host, exc)

    def status_line(self) -> str:
        config = self.rt.config
        running = len(self.jobs.running())
        sources, sites = len(config.sources), len(config.sites)
        text = f"{plural(sources, 'source')}, {plural(sites, 'site')}, {running} running"
        upcoming = [
            (job.next_run_time, job.args[0])
            for job in self.scheduler.get_jobs()
            if job.id.startswith(("cycle:", "catch-up:")) and job.next_run_time is not None
        ]
        if upcoming:
            when, name = min(upcoming)
            wait = max((when - datetime.now(when.tzinfo)).total_seconds(), 0)
            text += f", next: {name} in {humanize_age(wait)}"
        return text

    # -- reload ------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: a valid config replaces the jobs; running cycles finish under the old one.
        An invalid config is rejected with validate's words and the old one keeps running."""
        log.info("SIGHUP: reloading %s", self.config_path)
        try:
            config = load_config(self.config_path, check_environment=True)
            # Not asking the sites: runs are going on, and those restic processes would hold
            # no run slot (`firebreak validate`, run before a reload, asks them).
            verify_placement(config, probe_repositories=False)
        except ConfigError as exc:
            self._reload_failed(exc.render())
            return
        except StartupError as exc:
            self._reload_failed(str(exc))
            return
        before = self.rt.host
        self.rt = self.rt.reconfigured(config)
        if self.rt.host != before:
            self._beat_stopped(before)  # that name's daemon is this one, now called otherwise
        recall_repositories(self.rt)
        self._beat()
        self._schedule_sources(config)
        self._catch_up(initial=False)  # a source the new config adds starts now
        self.reload_status = ReloadStatus(ok=True, at=utcnow())
        log.info("configuration reloaded: %s", self.status_line())
        self.notifier.notify(f"STATUS={self.status_line()}")

    def _reload_failed(self, message: str) -> None:
        for line in message.splitlines():
            log.error("%s", line)
        log.error("configuration NOT reloaded: the previous one keeps running")
        self.reload_status = ReloadStatus(ok=False, at=utcnow(), message=message)


def _still_running(pid: int | None) -> bool:
    """Is pid a live firebreak other than this one (a manual backup still at work)?"""
    if pid is None or pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"firebreak" in cmdline
