"""``firebreak status``: is everything safe? Answered from the run history, not from restic:
by the running daemon when it runs this config (daemon/control.py), else read here."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from firebreak.cli.common import (
    Exit,
    Options,
    console,
    daemon_of,
    errors_as_json,
    fail,
    load,
    new_table,
)
from firebreak.clock import utcnow
from firebreak.humanize import format_bytes, humanize_age, plural, short_id

log = logging.getLogger(__name__)

# Asking the daemon needs none of the config model, SQLAlchemy or rich's tables until the
# answer is drawn: those are imported where they are used.
if TYPE_CHECKING:
    from rich.table import Table

    from firebreak.daemon.overview import HostOverview
    from firebreak.history.freshness import SourceFreshness


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the same data as JSON.")
@click.option(
    "--fleet",
    is_flag=True,
    help="Every host recording into this history: its daemon's heartbeat and its sources.",
)
@click.pass_obj
def status(options: Options, as_json: bool, fleet: bool) -> None:
    """Freshness of every source at every site, and whether each source is safe.

    Exit 0 when every source is safe (with --fleet: and every host's daemon alive), 4 when
    one or more is not.
    """
    if as_json:
        errors_as_json()
    seen = None if fleet else _from_daemon(options.config_path)
    if seen is None:
        seen = _from_history(options, fleet, as_json)
    if as_json:
        click.echo(json.dumps(seen, indent=2))
    else:
        _print(seen)
    safe = all(source["safe"] for source in seen["sources"])
    raise SystemExit(Exit.OK if safe else Exit.FAILED)


def _from_daemon(config_path: Path) -> dict[str, Any] | None:
    """The running daemon's answer, when it runs this very file (daemon/control.py); None
    otherwise, and for a file only the model can read (status then says what is wrong)."""
    from firebreak.daemon.control import ask_status

    found = daemon_of(config_path)
    if found is None:
        return None
    answer = ask_status(*found)
    if answer is not None:
        log.info("answered by the daemon running %s", config_path)
    return answer


def _from_history(options: Options, fleet: bool, as_json: bool) -> dict[str, Any]:
    """The status document read from the history here (with --fleet, print the fleet and
    exit)."""
    from firebreak.daemon.overview import document, fleet_overview, overview
    from firebreak.history.database import DatabaseError, make_engine, require_current, sqlite_path

    config = load(options)
    history = sqlite_path(config.database_url)
    if history is not None and not history.exists():
        fail(
            f"no run history at {history} (database.url): nothing has run yet, "
            "or the path is wrong",
            Exit.NOT_READY,
        )
    try:
        engine = make_engine(config.database_url)
        require_current(engine)
        if fleet:
            _fleet(fleet_overview(engine, utcnow()), as_json)
        return document(overview(config, engine, utcnow()))
    except DatabaseError as exc:
        fail(str(exc), Exit.NOT_READY)


def _print(seen: dict[str, Any]) -> None:
    out = console()
    now = datetime.fromisoformat(seen["generated_at"])
    for source in seen["sources"]:
        out.print(_table(source, now))
        for line in _problems(source):
            click.echo(line)
        if source["placement_degraded"] is not None:
            click.echo(f"  placement DEGRADED: {source['placement_degraded']}")
        click.echo(f"  {source['rules_summary']}")
        for name, rule in source["rules"].items():
            if rule["required"] and not rule["ok"]:
                click.echo(f"  required {name} BROKEN: {rule['shown']} ({rule['detail']})")
        click.echo(f"  next cycle: {source['next_cycle']}")
    unsafe = [source["source"] for source in seen["sources"] if not source["safe"]]
    if unsafe:
        out.print(f"[bold red]NOT SAFE:[/] {', '.join(unsafe)}")
    else:
        out.print(f"[green]every source is safe ({plural(len(seen['sources']), 'source')})[/]")


def _table(source: dict[str, Any], now: datetime) -> Table:
    verdict = "[green]safe[/]" if source["safe"] else "[bold red]NOT SAFE[/]"
    table = new_table(
        title=(
            f"{source['source']}: {verdict} — {source['fresh_sites']} of "
            f"{plural(len(source['sites']), 'site')} count (fresh, not damaged or lost), "
            f"{source['required_fresh_sites']} required, "
            f"max_age {source['max_age']}"
        ),
        title_justify="left",
    )
    columns = ("site", "state", "success", "attempt", "outcome", "snapshot", "added", "drill")
    for column in columns:
        table.add_column(column, overflow="fold")
    for site in source["sites"]:
        age = site["age_seconds"]
        table.add_row(
            site["site"],
            STATES[site["state"]],
            f"{humanize_age(age)} ago" if age is not None else "never",
            _ago(site["last_attempt_at"], now),
            site["last_outcome"] or "-",
            short_id(site["snapshot_id"]),
            format_bytes(site["bytes_added"]),
            _drill(site["last_drill_success_at"], now),
        )
    return table


STATES = {
    "lost": "[bold red]LOST[/]",
    "damaged": "[bold red]DAMAGED[/]",
    "fresh": "[green]fresh[/]",
    "stale": "[red]STALE[/]",
}


def _ago(moment: str | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return f"{humanize_age((now - datetime.fromisoformat(moment)).total_seconds())} ago"


def _drill(passed: str | None, now: datetime) -> str:
    """When a restore drill last passed at the site."""
    return "never" if passed is None else f"passed {_ago(passed, now)}"


def _problems(source: dict[str, Any]) -> list[str]:
    lines = []
    for site in source["sites"]:
        if site["lost"]:
            lines.append(f"  {site['site']}: LOST: {site['lost']}")
        if site["damaged"]:
            lines.append(f"  {site['site']}: DAMAGED: {site['damaged']}")
        if site["last_error"] and not site["lost"]:  # a lost site's last error says the same
            lines.append(f"  {site['site']}: {site['last_error']}")
    return lines


def _fleet(fleet: list[HostOverview], as_json: bool) -> NoReturn:
    """Print every host of the fleet; exit 0 when every one is alive and safe, else 4."""
    now = utcnow()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "generated_at": now.isoformat(),
                    "hosts": [
                        {
                            "host": host.host,
                            "state": host.state.lower(),
                            "last_seen_at": host.last_seen_at.isoformat(),
                            "version": host.version,
                            "safe": host.safe,
                            "sources": None
                            if host.sources is None
                            else {source.source: source.safe for source in host.sources},
                        }
                        for host in fleet
                    ],
                },
                indent=2,
            )
        )
    else:
        out = console()
        table = new_table(
            title=f"fleet: {plural(len(fleet), 'host')} recording into this history",
            title_justify="left",
        )
        for column in ("host", "daemon", "last seen", "sources safe", "not safe"):
            table.add_column(column, overflow="fold")
        for host in fleet:
            table.add_row(
                host.host,
                HOST_STATES[host.state],
                f"{humanize_age((now - host.last_seen_at).total_seconds())} ago",
                "?" if host.sources is None else _count_safe(host.sources),
                "?" if host.sources is None else _unsafe(host.sources),
            )
        out.print(table)
        for host in fleet:
            if host.sources is None:
                click.echo(
                    f"  {host.host}: what its sources ask could not be read (recorded by "
                    f"firebreak {host.version}): upgrade firebreak here"
                )
        troubled = [host.host for host in fleet if not host.safe]
        if not fleet:
            click.echo("no daemon has recorded a heartbeat in this history yet")
        elif troubled:
            out.print(f"[bold red]NOT SAFE:[/] {', '.join(troubled)}")
        else:
            out.print(f"[green]every host is alive and safe ({plural(len(fleet), 'host')})[/]")
    raise SystemExit(Exit.OK if all(host.safe for host in fleet) else Exit.FAILED)


HOST_STATES = {
    "alive": "[green]alive[/]",
    "SILENT": "[bold red]SILENT[/]",
    "stopped": "[red]stopped[/]",
}


def _count_safe(sources: list[SourceFreshness]) -> str:
    return f"{sum(1 for source in sources if source.safe)} of {len(sources)}"


def _unsafe(sources: list[SourceFreshness]) -> str:
    unsafe = [
        f"{source.source} ({source.fresh_sites} of {source.required_fresh_sites} fresh)"
        for source in sources
        if not source.safe
    ]
    return ", ".join(unsafe) or "-"
