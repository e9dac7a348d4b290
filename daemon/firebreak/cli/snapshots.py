"""``firebreak snapshots SOURCE``: what each site holds for a source (asks restic)."""

from __future__ import annotations

import json
import threading
from datetime import UTC

import click
from rich.table import Table

from firebreak.actions.inspect import SiteSnapshots, list_snapshots
from firebreak.actions.runtime import prepare_restic
from firebreak.cli.common import (
    Exit,
    Options,
    cancel_on_signals,
    check_names,
    console,
    errors_as_json,
    fail,
    load,
    new_table,
)
from firebreak.humanize import plural
from firebreak.outcomes import ResticUnavailable
from firebreak.restic.commands import SOURCE_TAG_PREFIX


@click.command()
@click.argument("source")
@click.option("--site", "sites", multiple=True, help="Only this site (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def snapshots(options: Options, source: str, sites: tuple[str, ...], as_json: bool) -> None:
    """List the snapshots of SOURCE at each of its sites.

    Exit 0 when every site answered, 4 when one or more could not.
    """
    if as_json:
        errors_as_json()
    config = load(options, check_environment=True)
    check_names(options, config, [source], sites)
    names = list(sites) or list(config.sources[source].sites)
    try:
        prepare_restic(config)
    except ResticUnavailable as exc:
        fail(str(exc), Exit.NOT_READY)
    cancel = threading.Event()
    with cancel_on_signals(cancel):
        listing = list_snapshots(config, source, names, cancel)
    if cancel.is_set():
        raise SystemExit(Exit.INTERRUPTED)
    if as_json:
        click.echo(json.dumps([_as_json(entry) for entry in listing], indent=2))
    else:
        out = console()
        for entry in listing:
            if entry.error:
                # One line, whole: a narrow empty table would fold the reason.
                out.print(f"{source} at {entry.site}: [red]{entry.error}[/]", soft_wrap=True)
            else:
                out.print(_table(source, entry))
    raise SystemExit(Exit.FAILED if any(entry.error for entry in listing) else Exit.OK)


def _as_json(entry: SiteSnapshots) -> dict[str, object]:
    return {
        "site": entry.site,
        "error": entry.error,
        "snapshots": [snapshot.model_dump(mode="json") for snapshot in entry.snapshots],
    }


def _table(source: str, entry: SiteSnapshots) -> Table:
    title = f"{source} at {entry.site}: {plural(len(entry.snapshots), 'snapshot')}"
    table = new_table(title=title, title_justify="left")
    for column in ("id", "time (UTC)", "host", "paths", "tags"):
        table.add_column(column, overflow="fold")
    for snapshot in entry.snapshots:
        tags = [t for t in snapshot.tags or [] if not t.startswith(SOURCE_TAG_PREFIX)]
        table.add_row(
            snapshot.short,
            snapshot.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            snapshot.hostname,
            "\n".join(snapshot.paths),
            ", ".join(tags),
        )
    return table
