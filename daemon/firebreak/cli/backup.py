"""``firebreak backup SOURCE``: one cycle now, to every site of the source (or the ones named):
run by the daemon when it runs this config (daemon/control.py), else here."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from firebreak.cli.common import (
    Exit,
    Options,
    cancel_on_signals,
    check_names,
    console,
    daemon_of,
    fail,
    load,
    logs_above,
    new_table,
    runtime,
)
from firebreak.humanize import format_bytes, humanize_age, plural, short_id

# Asking the daemon needs none of the config model, SQLAlchemy or the actions: those are
# imported where the cycle runs here.
if TYPE_CHECKING:
    from rich.progress import TaskID
    from rich.table import Table

log = logging.getLogger(__name__)


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--all", "all_sources", is_flag=True, help="Back up every source.")
@click.option("--site", "sites", multiple=True, help="Only this site (repeatable).")
@click.pass_obj
def backup(
    options: Options, sources: tuple[str, ...], all_sources: bool, sites: tuple[str, ...]
) -> None:
    """Back up SOURCES to their sites now.

    Exit 0 when every site succeeded, 3 when every site has a new snapshot but some files
    could not be read, 4 when one or more sites failed, 130 when interrupted (Ctrl-C,
    SIGTERM: restic is stopped and the runs are recorded as interrupted).
    """
    if sources or all_sources:
        done = _by_the_daemon(options, sources, all_sources, sites)
        if done is not None:
            raise SystemExit(_exit_code(*done))
    raise SystemExit(_exit_code(*_here(options, sources, all_sources, sites)))


def _by_the_daemon(
    options: Options, sources: tuple[str, ...], all_sources: bool, sites: tuple[str, ...]
) -> tuple[set[str], bool] | None:
    """The cycles run by the daemon that runs this very config file, as this command would
    run them: how they ended, and whether they were stopped. None when no daemon takes them
    (none runs, it runs another config, a name is unknown or the placement policy refuses:
    then they run here, and say why)."""
    from firebreak.daemon.control import Asking, relog

    found = daemon_of(options.config_path)
    if found is None:
        return None
    state_dir, fingerprint = found
    progress = sys.stdout.isatty()
    question = {
        "ask": "backup",
        "config": fingerprint,
        "sources": list(sources),
        "all": all_sources,
        "sites": list(sites),
        "progress": progress,
        "verbose": options.verbose,
        "where": str(options.config_path),
    }
    try:
        asking = Asking(state_dir, question)
    except OSError as exc:
        log.debug("no daemon on %s: %s", state_dir, exc)
        return None
    stopped = threading.Event()
    end = None
    with asking:
        first = asking.first()
        if first is None or not isinstance(first.get("accepted"), dict):
            log.debug("the daemon did not take the backup: %s", first)
            return None
        try:
            asking.go()
        except OSError:  # it went away before it started: nothing ran there
            return None
        log.info("run by the daemon running %s", options.config_path)
        for to_stderr, line in first["accepted"].get("said", []):
            click.echo(line, err=to_stderr)
        bars = _Bars() if progress else None
        with cancel_on_signals(stopped, then=asking.stop), bars or contextlib.nullcontext():
            for message in asking.rest():
                if "progress" in message:
                    if bars is not None:
                        bars(*message["progress"])
                elif "log" in message:
                    relog(message["log"])
                else:
                    end = message
                    break
    if end is None and stopped.is_set():
        fail(
            "the daemon did not say how the backup ended: it goes on stopping it "
            "(its log says more)",
            Exit.INTERRUPTED,
        )
    if end is None:
        fail(
            "the daemon stopped before the backup ended (its runs are recorded as interrupted)",
            Exit.INTERRUPTED,
        )
    if "error" in end:
        fail(str(end["error"]), int(end.get("code", Exit.ERROR)))
    reports: list[dict[str, Any]] = end["reports"]
    _show(reports)
    statuses = {report["status"] for report in reports}
    for name in end.get("skipped", []):
        click.echo(f"  {name}: not backed up: the daemon's config no longer has it (reloaded)")
        statuses.add("failed")
    return statuses, bool(end.get("interrupted")) or stopped.is_set()


def _here(
    options: Options, sources: tuple[str, ...], all_sources: bool, sites: tuple[str, ...]
) -> tuple[set[str], bool]:
    """The cycles run in this process: how they ended, and whether it was stopped."""
    from firebreak.actions.cycle import run_cycle
    from firebreak.cli.placement import print_report
    from firebreak.notify.sender import CycleNotifier
    from firebreak.placement.check import check_placement

    config = load(options, check_environment=True)
    names = list(dict.fromkeys(config.sources if all_sources else sources))
    chosen = list(dict.fromkeys(sites)) or None
    if not names:
        fail("name a source to back up, or use --all", Exit.CONFIG)
    check_names(options, config, names, chosen or ())
    # The same rules as validate and the daemon, minus the network probes: a config that
    # violates the policy in error mode is refused here too.
    placement = check_placement(
        config, sources=names, resolve_hosts=False, probe_repositories=False
    )
    print_report(options, placement)
    if placement.errors:
        count = len(placement.errors)
        fail(f"{plural(count, 'placement violation')}; nothing was backed up", Exit.CONFIG)
    rt = runtime(config)
    cancel = threading.Event()
    notifier = CycleNotifier(config)
    # Live bars on a terminal; nothing in a script, a pipe or under systemd.
    bars = _Bars() if sys.stdout.isatty() else None
    with cancel_on_signals(cancel), bars or contextlib.nullcontext():
        reports = []
        for name in names:
            if cancel.is_set():
                break
            cycle = run_cycle(
                rt, name, sites=chosen, cancel=cancel, notifier=notifier, progress=bars
            )
            reports.append(cycle.document())
    notifier.wait(timeout=10)  # a short-lived process: let notifications in flight finish
    _show(reports)
    return {report["status"] for report in reports}, cancel.is_set()


def _show(reports: list[dict[str, Any]]) -> None:
    out = console()
    for report in reports:
        out.print(_table(report))
        for line in _problems(report):
            click.echo(line)


def _exit_code(statuses: set[str], interrupted: bool) -> int:
    if interrupted:
        return Exit.INTERRUPTED
    if statuses <= {"success"}:
        return Exit.OK
    if statuses <= {"success", "partial"}:
        return Exit.PARTIAL
    return Exit.FAILED


def _table(report: dict[str, Any]) -> Table:
    runs = report["runs"]
    ok = sum(1 for run in runs if run["status"] in ("success", "partial"))
    table = new_table(
        title=(
            f"{report['source']}: {report['status']} "
            f"({ok} of {plural(len(report['sites']), 'site')}, cycle {report['cycle_id']})"
        ),
        title_justify="left",
    )
    for column in ("site", "outcome", "snapshot", "added", "duration", "problem"):
        table.add_column(column, overflow="fold")
    for run in runs:
        duration = run["duration_seconds"]
        table.add_row(
            run["site"],
            _colour(run["status"]),
            short_id(run["snapshot_id"]),
            format_bytes(run["bytes_added"]),
            f"{duration:.1f}s" if duration is not None else "-",
            run["error_class"] or "",
        )
    return table


def _problems(report: dict[str, Any]) -> list[str]:
    lines = [
        f"  {run['site']}: {run['error_class']}: {run['error_message']}"
        for run in report["runs"]
        if run["error_class"]
    ]
    return lines + [f"  {site}: no run recorded (the log says why)" for site in report["missing"]]


def _colour(status: str) -> str:
    colour = {"success": "green", "partial": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/]"


class _Bars:
    """A bar per source and site while restic backs up: its share done, bytes and files
    against what it found to back up, its speed and the time it says is left."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TransferSpeedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(binary_units=True),
            TextColumn("{task.fields[files]}"),
            TransferSpeedColumn(),
            TextColumn("{task.fields[left]}"),
            console=console(),
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.lock = threading.Lock()  # the sites report from threads of their own

    def __enter__(self) -> _Bars:
        self._shown = logs_above(self.bars)
        self._shown.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._shown.__exit__(None, None, None)

    def __call__(self, source: str, site: str, status: dict[str, Any]) -> None:
        with self.lock:
            task = self.tasks.get((source, site))
            if task is None:
                task = self.bars.add_task(f"{source} → {site}", total=None, files="", left="")
                self.tasks[(source, site)] = task
        total = status.get("total_bytes")
        files = f"{status.get('files_done', 0)}/{status.get('total_files', '?')} files"
        remaining = status.get("seconds_remaining")
        left = f"{humanize_age(remaining)} left" if isinstance(remaining, int | float) else ""
        self.bars.update(
            task,
            completed=status.get("bytes_done", 0),
            total=total if isinstance(total, int) and total > 0 else None,
            files=files,
            left=left,
        )
