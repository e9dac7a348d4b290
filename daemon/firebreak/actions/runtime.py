"""What every cycle needs, opened once: config, database, restic's version, the run slots."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from firebreak.config.model import Config
from firebreak.history.database import make_engine, require_current
from firebreak.history.unwritten import Unwritten
from firebreak.outcomes import ResticUnavailable
from firebreak.placement.targets import is_local
from firebreak.restic.cache import forget_cached
from firebreak.restic.commands import SiteAccess, SiteRestic
from firebreak.restic.program import detect_version
from firebreak.restic.version import ResticVersion


def local_run_limit(config: Config) -> int:
    """Runs at local sites at once: max_parallel_local_runs, or the CPU cores this process
    may use, or the most local sites a source has if that is more."""
    if config.max_parallel_local_runs is not None:
        return config.max_parallel_local_runs
    widest = max(
        (
            sum(1 for name in source.sites if is_local(config.sites[name]))
            for source in config.sources.values()
        ),
        default=1,
    )
    return min(64, max(1, len(os.sched_getaffinity(0)), widest))


# How often a run waiting for a slot looks whether it was stopped.
SLOT_POLL_SECONDS = 0.5


class RunSlots:
    """At most ``limit`` restic processes at once, whatever mix of sources and sites. A reload
    changes the limit of the same slots, so runs started under the old config still count."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy = 0
        self._changed = threading.Condition()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def busy(self) -> int:
        return self._busy

    def resize(self, limit: int) -> None:
        with self._changed:
            self._limit = limit
            self._changed.notify_all()

    def take(self, cancel: threading.Event | None = None) -> bool:
        """Wait for a slot and take it; False, with none taken, once cancel is set (a
        backup stopped while it waits for others to end)."""
        with self._changed:
            while self._busy >= self._limit:
                if cancel is not None and cancel.is_set():
                    return False
                self._changed.wait(None if cancel is None else SLOT_POLL_SECONDS)
            self._busy += 1
        return True

    def release(self) -> None:
        with self._changed:
            self._busy -= 1
            self._changed.notify_all()

    def __enter__(self) -> RunSlots:
        self.take()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Runtime:
    config: Config
    engine: Engine
    restic_version: ResticVersion
    host: str
    # At most run_limit restic processes at once, whatever mix of sources and sites; of them,
    # at most local_run_limit at local sites.
    run_slots: RunSlots = field(init=False)
    local_slots: RunSlots = field(init=False)
    # Sites whose last run was stopped or hit a lock: `restic unlock` before the next run.
    needs_unlock: set[str] = field(default_factory=set)
    # Ends of runs and cycles the history could not take: written when it answers again.
    unwritten: Unwritten = field(default_factory=Unwritten)
    # The repository id recorded at each site's location, as last read (None: none recorded):
    # what a run trusts while the history is away (actions/identity.py).
    recalled: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_slots = RunSlots(self.config.run_limit)
        self.local_slots = RunSlots(local_run_limit(self.config))

    @property
    def locks_dir(self) -> Path:
        return self.config.locks_dir

    @property
    def kill_grace(self) -> float:
        """How long restic gets after SIGINT before SIGKILL."""
        return self.config.daemon.shutdown_grace.total_seconds()

    def reconfigured(self, config: Config) -> Runtime:
        """The same database, restic, run slots and stale-lock knowledge under a new config
        (SIGHUP): runs that started before the reload still hold their slots."""
        fresh = Runtime(
            config=config,
            engine=self.engine,
            restic_version=self.restic_version,
            host=config.host_name,  # a changed host: applies from now on, everywhere
        )
        fresh.needs_unlock = self.needs_unlock
        fresh.unwritten = self.unwritten
        fresh.recalled = self.recalled
        fresh.run_slots = self.run_slots
        fresh.local_slots = self.local_slots
        self.run_slots.resize(config.run_limit)
        self.local_slots.resize(local_run_limit(config))
        return fresh

    def restic_at(self, access: SiteAccess) -> SiteRestic:
        """How restic runs at the site, in this process's environment."""
        return SiteRestic.of(self.config, access, os.environ, self.restic_version)


def prepare_restic(config: Config) -> ResticVersion:
    """restic's version (ResticUnavailable if missing or too old), and the state and cache
    directories it needs."""
    version = detect_version(config.restic.binary)
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        config.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Each site has a cache of its own now (config.site_cache_dir); one shared by every
        # site (as earlier releases had) is of no use any more.
        forget_cached(config.cache_dir)
    except OSError as exc:  # a read-only or full filesystem, a path that is a file
        where = exc.filename or config.state_dir
        raise ResticUnavailable(
            f"cannot prepare restic's cache in {where}: {exc.strerror or exc} "
            "(state_dir and restic.cache_dir must be writable)"
        ) from None
    return version


def open_runtime(config: Config, *, engine: Engine | None = None) -> Runtime:
    """Check restic and the database, create the state directories; raise with a clear
    message (ResticUnavailable, DatabaseError) when something is missing."""
    version = prepare_restic(config)
    engine = engine or make_engine(config.database_url)
    require_current(engine)
    return Runtime(config=config, engine=engine, restic_version=version, host=config.host_name)


class RunLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the source, site and run id (sites run concurrently)."""

    @property
    def run_id(self) -> int | None:
        value = (self.extra or {}).get("run_id")
        return value if isinstance(value, int) else None

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        run = f" run {extra['run_id']}" if extra.get("run_id") else ""
        source = f"{extra['source']} → " if extra.get("source") else ""
        return f"[{source}{extra.get('site')}{run}] {msg}", kwargs
