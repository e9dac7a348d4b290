"""``firebreak status``: is everything safe? Answered from the run history, not from restic."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, NoReturn

import click
from rich.table import Table

from firebreak.cli.common import (
    Exit,
    Options,
    console,
    errors_as_json,
    fail,
    load,
    new_table,
)
from firebreak.clock import utcnow
from firebreak.daemon.overview import HostOverview, SourceOverview, fleet_overview, overview
from firebreak.history.database import DatabaseError, make_engine, require_current, sqlite_path
from firebreak.history.freshness import SiteFreshness, SourceFreshness
from firebreak.humanize import format_bytes, format_seconds, humanize_age, plural, short_id


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
        seen = overview(config, engine, utcnow())
    except DatabaseError as exc:
        fail(str(exc), Exit.NOT_READY)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "generated_at": seen.generated_at.isoformat(),
                    "sources": [_as_json(source) for source in seen.sources],
                },
                indent=2,
            )
        )
    else:
        out = console()
        for source in seen.sources:
            out.print(_table(source.freshness))
            for line in _problems(source.freshness):
                click.echo(line)
            if source.degraded is not None:
                click.echo(f"  placement DEGRADED: {source.degraded}")
            click.echo(f"  {source.rules.line()}")
            for rule in source.rules.broken_required:
                click.echo(f"  required {rule.rule} BROKEN: {rule.shown} ({rule.detail})")
            click.echo(f"  next cycle: {source.next_cycle.text}")
        unsafe = [s.freshness.source for s in seen.sources if not s.freshness.safe]
        if unsafe:
            out.print(f"[bold red]NOT SAFE:[/] {', '.join(unsafe)}")
        else:
            out.print(f"[green]every source is safe ({plural(len(seen.sources), 'source')})[/]")
    raise SystemExit(Exit.OK if seen.safe else Exit.FAILED)


def _as_json(source: SourceOverview) -> dict[str, Any]:
    data = asdict(source.freshness)
    upcoming = source.next_cycle.at
    data["next_cycle_at"] = None if upcoming is None else upcoming.isoformat()
    data["cycle_overdue"] = source.next_cycle.overdue
    data["max_age"] = format_seconds(source.freshness.max_age_seconds)
    data["placement_degraded"] = source.degraded
    data["rules"] = {
        rule.rule: {
            "count": rule.count,
            "target": rule.target,
            "ok": rule.ok,
            "required": rule.required,
            "detail": rule.detail,
        }
        for rule in source.rules.rules
    }
    for site, counted in zip(data["sites"], source.freshness.sites, strict=True):
        site["counts"] = counted.counts
        for key in ("last_success_at", "last_attempt_at", "last_drill_success_at"):
            if site[key] is not None:
                site[key] = site[key].isoformat()
    return data


def _table(source: SourceFreshness) -> Table:
    verdict = "[green]safe[/]" if source.safe else "[bold red]NOT SAFE[/]"
    max_age = format_seconds(source.max_age_seconds)
    table = new_table(
        title=(
            f"{source.source}: {verdict} — {source.fresh_sites} of "
            f"{plural(len(source.sites), 'site')} count (fresh, not damaged or lost), "
            f"{source.required_fresh_sites} required, "
            f"max_age {max_age}"
        ),
        title_justify="left",
    )
    columns = ("site", "state", "success", "attempt", "outcome", "snapshot", "added", "drill")
    for column in columns:
        table.add_column(column, overflow="fold")
    now = utcnow()
    for site in source.sites:
        table.add_row(
            site.site,
            STATES[site.state],
            f"{humanize_age(site.age_seconds)} ago" if site.age_seconds is not None else "never",
            f"{humanize_age((now - site.last_attempt_at).total_seconds())} ago"
            if site.last_attempt_at
            else "never",
            site.last_outcome or "-",
            short_id(site.snapshot_id),
            format_bytes(site.bytes_added),
            _drill(site, now),
        )
    return table


STATES = {
    "lost": "[bold red]LOST[/]",
    "damaged": "[bold red]DAMAGED[/]",
    "fresh": "[green]fresh[/]",
    "stale": "[red]STALE[/]",
}


def _drill(site: SiteFreshness, now: datetime) -> str:
    """When a restore drill last passed at the site."""
    if site.last_drill_success_at is None:
        return "never"
    return f"passed {humanize_age((now - site.last_drill_success_at).total_seconds())} ago"


def _problems(source: SourceFreshness) -> list[str]:
    lines = []
    for site in source.sites:
        if site.lost:
            lines.append(f"  {site.site}: LOST: {site.lost}")
        if site.damaged:
            lines.append(f"  {site.site}: DAMAGED: {site.damaged}")
        if site.last_error and not site.lost:  # a lost site's last error says the same
            lines.append(f"  {site.site}: {site.last_error}")
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
