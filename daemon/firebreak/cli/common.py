"""What every command shares: exit codes, loading the config, opening the runtime, output."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TextIO

import click

# The top-level group imports this module: what only some commands need (pydantic's config
# model, SQLAlchemy, rich) is imported where it is used, so that `firebreak --version`,
# `--help` and a typo answer at once.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from firebreak.actions.runtime import Runtime
    from firebreak.config import Config

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
    from rich.console import Console

    # A pipe or a log file gets wide tables rather than folded cells; a terminal its width.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(highlight=False, soft_wrap=False, width=width)


@contextmanager
def logs_above(live: Progress) -> Iterator[None]:
    """Show live while the block runs, with log lines above it rather than through it (rich
    redirects sys.stderr, but the logging handlers hold the old one)."""
    live.start()
    moved = [
        (handler, handler.setStream(sys.stderr))
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__
    ]
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
        live.stop()


class Working:
    """On a terminal, a line with a spinner and the time spent for each step under way
    (``with working.on("restic check at gra"):``), gone when it ends; in a script, a pipe or
    under systemd, nothing."""

    def __init__(self) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.live = (
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console(),
                transient=True,
            )
            if sys.stdout.isatty()
            else None
        )
        self._shown: contextlib.AbstractContextManager[None] = contextlib.nullcontext()

    def __enter__(self) -> Working:
        if self.live is not None:
            self._shown = logs_above(self.live)
        self._shown.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._shown.__exit__(None, None, None)

    def say(self, line: str) -> None:
        """A result line, printed above the spinners (click.echo would write through them)."""
        if self.live is None:
            click.echo(line)
        else:
            self.live.console.print(line, markup=False, highlight=False, soft_wrap=True)

    @contextmanager
    def on(self, what: str) -> Iterator[None]:
        if self.live is None:
            yield
            return
        task = self.live.add_task(what, total=None)
        try:
            yield
        finally:
            self.live.remove_task(task)


# Set by a command run with --json: its errors are JSON on stdout too, so that a script
# reading stdout learns why there is no answer.
_errors_as_json = False


def errors_as_json() -> None:
    global _errors_as_json
    _errors_as_json = True


def new_table(**kwargs: Any) -> Table:
    """A table as rich draws it on a terminal; in a pipe or a file, plain columns without
    box-drawing characters, for grep and awk."""
    from rich.table import Table

    if not sys.stdout.isatty():
        kwargs.setdefault("box", None)
    return Table(**kwargs)


def fail(message: str, code: int, problems: list[str] | None = None) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    if _errors_as_json:
        error: dict[str, object] = {"error": message, "exit_code": code}
        if problems is not None:
            error["problems"] = problems
        click.echo(json.dumps(error, indent=2))
    sys.exit(code)


def load(options: Options, *, check_environment: bool = False) -> Config:
    from firebreak.config import ConfigError, load_config
    from firebreak.humanize import plural

    try:
        return load_config(options.config_path, check_environment=check_environment)
    except ConfigError as exc:
        rendered = exc.render()
        click.echo(rendered, err=True)
        fail(
            f"{plural(len(exc.problems), 'problem')} in {exc.file}",
            Exit.CONFIG,
            problems=rendered.splitlines(),
        )


@contextmanager
def cancel_on_signals(
    cancel: threading.Event, then: Callable[[], None] | None = None
) -> Iterator[None]:
    """Ctrl-C or SIGTERM stop restic cleanly (its own process group does not get the
    terminal's SIGINT) and the runs are recorded as interrupted, instead of firebreak dying
    and leaving restic and ``running`` rows behind. then: also called (a backup the daemon
    runs is told to stop)."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping restic…", err=True)
        cancel.set()
        if then is not None:
            then()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that what the block started is
    stopped on the way out (Python's default for SIGTERM is to end without cleaning up)."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def daemon_of(config_path: Path) -> tuple[Path, str] | None:
    """Where a daemon running this config file would listen (its state_dir) and the file's
    fingerprint (config/fingerprint.py), without the config model; None when the file cannot
    be read that way (the command then loads it, and says what is wrong)."""
    import yaml

    from firebreak.config.fingerprint import fingerprint, state_dir_of

    try:
        raw = config_path.read_bytes()
        data = yaml.safe_load(raw)
    except (OSError, yaml.YAMLError):
        return None
    state_dir = state_dir_of(data, config_path.resolve().parent)
    return None if state_dir is None else (state_dir, fingerprint(config_path, raw))


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
    from firebreak.actions.runtime import open_runtime
    from firebreak.history.database import DatabaseError
    from firebreak.outcomes import ResticUnavailable

    try:
        return open_runtime(config)
    except (ResticUnavailable, DatabaseError) as exc:
        fail(str(exc), Exit.NOT_READY)


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if to_journal(sys.stderr):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # Alembic and APScheduler narrate every step at INFO; that is debug detail for us.
    for chatty in ("alembic", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def to_journal(stream: TextIO) -> bool:
    """Whether the stream is systemd's journal (JOURNAL_STREAM names its device and inode):
    then the journal stamps each line itself."""
    given = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = given.partition(":")
    try:
        found = os.fstat(stream.fileno())
        return (found.st_dev, found.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False  # AttributeError: no stderr at all (started with 2>&-)


class JournalFormatter(logging.Formatter):
    """A line for the journal: no timestamp of its own, and its level as a syslog priority
    prefix (``<3>``), so that ``journalctl -p err`` finds firebreak's errors."""

    PRIORITIES: ClassVar[dict[int, int]] = {
        logging.CRITICAL: 2,
        logging.ERROR: 3,
        logging.WARNING: 4,
        logging.INFO: 6,
        logging.DEBUG: 7,
    }

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = self.PRIORITIES.get(record.levelno, 6)
        # Every line of a traceback is its own journal entry: each gets the priority.
        lines = super().format(record).splitlines() or [""]
        return "\n".join(f"<{priority}>{line}" for line in lines)
