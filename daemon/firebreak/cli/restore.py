"""``firebreak restore``: for someone in the middle of an incident."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from firebreak.actions.flocks import if_free
from firebreak.actions.head_start import head_start
from firebreak.cli.common import (
    Exit,
    Options,
    cancel_on_signals,
    check_names,
    console,
    fail,
    load,
    runtime,
    terminated_as_interrupted,
)
from firebreak.clock import utcnow
from firebreak.humanize import format_bytes, humanize_age

# restic is started (actions/head_start.py) before the history's libraries and rich are
# imported: those are imported where they are used.
if TYPE_CHECKING:
    from rich.progress import TaskID

    from firebreak.actions.restore import RestoreProgress, RestoreReport
    from firebreak.config import Config


@click.command()
@click.argument("source")
@click.option(
    "--target",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to restore (created if missing).",
)
@click.option("--site", help="Only this site (default: the freshest that answers, then the next).")
@click.option(
    "--snapshot",
    default="latest",
    show_default=True,
    help="A snapshot id (with --site; any host's), or latest (this host's newest).",
)
@click.option(
    "--include", "include", multiple=True, help="Only this path from the snapshot (repeatable)."
)
@click.option("--force", is_flag=True, help="Restore into a target that is not empty.")
@click.pass_obj
def restore(
    options: Options,
    source: str,
    target: Path,
    site: str | None,
    snapshot: str,
    include: tuple[str, ...],
    force: bool,
) -> None:
    """Restore SOURCE into --target from the freshest site that can deliver it.

    If that site fails part-way, the next one is tried; nothing half-restored is left in the
    target. Files are verified after restoring. Exit 0 when restored, 4 when no site could.
    """
    config = load(options, check_environment=True)
    check_names(options, config, [source], (site,) if site else ())
    if snapshot != "latest" and site is None:
        fail("a snapshot id belongs to one site: give --site with --snapshot", Exit.CONFIG)
    target = target.resolve()
    if target.exists() and any(target.iterdir()) and not force:
        fail(
            f"{target} is not empty: choose an empty directory, or --force to restore into it",
            Exit.CONFIG,
        )
    with restoring_into(config, target):
        report, cancel = _restore_here(config, source, target, site, snapshot, include)
    _said(config, source, target, report, cancel)


@contextmanager
def restoring_into(config: Config, target: Path) -> Iterator[None]:
    """This host's only restore into target (two would share its staging directories), or
    exit 2 saying that another one is under way."""
    locks = config.locks_dir / "restores"
    key = hashlib.sha256(os.fsencode(target)).hexdigest()[:16]
    with contextlib.ExitStack() as held:
        try:
            mine = held.enter_context(if_free(locks, key, f"restore into {target}"))
        except OSError as exc:
            fail(f"cannot lock in {locks}: {exc.strerror or exc}", Exit.NOT_READY)
        if not mine:
            fail(
                f"another firebreak restore into {target} is under way: wait for it, or choose "
                "another --target",
                Exit.CONFIG,
            )
        yield


def _restore_here(
    config: Config,
    source: str,
    target: Path,
    site: str | None,
    snapshot: str,
    include: tuple[str, ...],
) -> tuple[RestoreReport, threading.Event]:
    """The restore's attempts, in this process, and whether it was stopped."""
    cancel = threading.Event()
    # Until the restore's runs watch the signals, Ctrl-C or SIGTERM ends the command at once
    # (loading the history can wait for a schema upgrade) and stops a restic started ahead.
    with terminated_as_interrupted():
        try:
            # The newest snapshot at the first site, restored while the rest is loaded; a
            # snapshot named by its id is looked up first (it must be one of this source's).
            head = None
            if snapshot == "latest":
                head = head_start(config, source, site, target, include)
            # Stopped within this try: a second Ctrl-C while it stops is still caught below.
            try:
                from firebreak.actions.restore import restore_source

                rt = runtime(config)
                bar = _Bar(source) if sys.stdout.isatty() else None
                with cancel_on_signals(cancel), bar or contextlib.nullcontext():
                    report = restore_source(
                        rt,
                        source,
                        target,
                        site=site,
                        snapshot=snapshot,
                        include=include,
                        cancel=cancel,
                        progress=bar,
                        head=head,
                    )
            finally:
                if head is not None:
                    head.discard()  # the restore ended before it took it over
        except KeyboardInterrupt:
            click.echo("interrupted before the restore began", err=True)
            raise SystemExit(Exit.INTERRUPTED) from None
    return report, cancel


def _said(
    config: Config, source: str, target: Path, report: RestoreReport, cancel: threading.Event
) -> None:
    """How the restore ended, and how to load a dump it restored; exits unless restored."""
    from firebreak.actions.dumps import load_instructions
    from firebreak.actions.restore import snapshot_age

    for attempt in report.attempts:
        if attempt.error:
            click.echo(f"  {attempt.site}: {attempt.error}", err=True)
    done = report.restored
    if done is None or done.snapshot is None:
        if cancel.is_set():
            raise SystemExit(Exit.INTERRUPTED)
        fail(f"{source} could not be restored from any site", Exit.FAILED)
    taken = done.snapshot.time
    age = humanize_age(snapshot_age(done.snapshot, utcnow()))
    click.echo(
        f"restored {source} from site {done.site}: snapshot {done.snapshot.short} taken "
        f"{taken:%Y-%m-%d %H:%M:%S %Z} ({age} ago), verified, into {target}"
    )
    for line in load_instructions(config.sources[source], target):
        click.echo(line)


class _Bar:
    """A progress bar per site tried: bytes written against the size of what is restored,
    then "verifying" while restic reads the files back."""

    def __init__(self, source: str) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.source = source
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console(),
            transient=False,
        )
        self.asking = self.bars.add_task(f"{source}: reading the sites' snapshot lists", total=None)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bar:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def __call__(self, progress: RestoreProgress) -> None:
        task = self.tasks.get(progress.site)
        if task is None:
            self.bars.update(self.asking, visible=False)
            task = self.bars.add_task("", total=progress.total)
            self.tasks[progress.site] = task
        if progress.verifying:
            doing = f"verifying {self.source} from {progress.site}"
        else:
            received = format_bytes(progress.received)
            doing = f"restoring {self.source} from {progress.site} ({received} read)"
        written = progress.written
        if progress.total is not None:
            written = min(written, progress.total)
        self.bars.update(
            task,
            description=doing,
            completed=written,
            total=progress.total,
        )
