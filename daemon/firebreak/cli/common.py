"""What every command shares: exit codes, loading the config, opening the runtime, output."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click
from rich.console import Console

from firebreak.actions.runtime import Runtime, open_runtime
from firebreak.config import Config, ConfigError, load_config
from firebreak.history.database import DatabaseError
from firebreak.outcomes import ResticUnavailable

DEFAULT_CONFIG = Path("/etc/firebreak/firebreak.yaml")


class Exit:
    """firebreak's exit codes (docs/cli.md lists them)."""

    OK = 0
    ERROR = 1  # something unexpected; the message says what
    CONFIG = 2  # bad command line or invalid config
    PARTIAL = 3  # every site has a new snapshot, but some files could not be read
    FAILED = 4  # one or more sites failed, or a source is not safe
    NOT_READY = 5  # restic or the database cannot be used
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: restic was stopped, the runs say so


@dataclass
class Options:
    config_path: Path
    verbose: int


def console() -> Console:
    # A pipe or a log file gets wide tables rather than folded cells; a terminal its width.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(highlight=False, soft_wrap=False, width=width)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load(options: Options, *, check_environment: bool = False) -> Config:
    try:
        return load_config(options.config_path, check_environment=check_environment)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {exc.file}", err=True)
        sys.exit(Exit.CONFIG)


@contextmanager
def cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM stop restic cleanly (its own process group does not get the
    terminal's SIGINT) and the runs are recorded as interrupted, instead of firebreak dying
    and leaving restic and ``running`` rows behind."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping restic…", err=True)
        cancel.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_names(
    options: Options, config: Config, sources: list[str], sites: list[str] | tuple[str, ...] = ()
) -> None:
    """Exit with a clear message when a source or site named on the command line is unknown."""
    for name in sources:
        if name not in config.sources:
            known = ", ".join(config.sources)
            fail(f"no source {name!r} in {options.config_path} (sources: {known})", Exit.CONFIG)
        for site in sites:
            if site not in config.sources[name].sites:
                fail(f"source {name!r} is not backed up to site {site!r}", Exit.CONFIG)


def runtime(config: Config) -> Runtime:
    try:
        return open_runtime(config)
    except (ResticUnavailable, DatabaseError) as exc:
        fail(str(exc), Exit.NOT_READY)


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic and APScheduler narrate every step at INFO; that is debug detail for us.
    for chatty in ("alembic", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
