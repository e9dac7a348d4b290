"""``firebreak status``: is everything safe? Answered from the run history, not from restic."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

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
from firebreak.config import Config
from firebreak.config.schedules import Cron, parse_schedule
from firebreak.daemon.catchup import is_overdue, last_runs
from firebreak.daemon.schedules import next_fire
from firebreak.history.database import DatabaseError, make_engine, require_current, sqlite_path
from firebreak.history.freshness import Proof, SiteFreshness, SourceFreshness, freshness
from firebreak.history.records import latest_runs
from firebreak.humanize import format_bytes, format_seconds, humanize_age, plural, short_id
from firebreak.placement.whatif import degradation


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the same data as JSON.")
@click.pass_obj
def status(options: Options, as_json: bool) -> None:
    """Freshness of every source at every site, and whether each source is safe.

    Exit 0 when every source is safe, 4 when one or more is not.
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
        latest = latest_runs(engine)
        proof = Proof.read(engine, socket.gethostname())
        started = last_runs(config, engine)
    except DatabaseError as exc:
        fail(str(exc), Exit.NOT_READY)
    now = utcnow()
    report = freshness(config, latest, now, proof)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "generated_at": now.isoformat(),
                    "sources": [_as_json(config, s, started, now) for s in report],
                },
                indent=2,
            )
        )
    else:
        out = console()
        for source in report:
            out.print(_table(source))
            for line in _problems(source):
                click.echo(line)
            degraded = degradation(config, source.source)
            if degraded is not None:
                click.echo(f"  placement DEGRADED: {degraded}")
            click.echo(f"  next cycle: {_next_cycle_text(config, source.source, started, now)}")
        unsafe = [s.source for s in report if not s.safe]
        if unsafe:
            out.print(f"[bold red]NOT SAFE:[/] {', '.join(unsafe)}")
        else:
            out.print(f"[green]every source is safe ({plural(len(report), 'source')})[/]")
    raise SystemExit(Exit.OK if all(source.safe for source in report) else Exit.FAILED)


def _next_cycle(
    config: Config, source: str, started: dict[str, datetime], now: datetime
) -> tuple[datetime | None, bool]:
    """When the source's next cycle is due (cron only: an interval counts from the daemon's
    start, which the history does not know), and whether it is overdue now."""
    schedule = parse_schedule(config.sources[source].schedule)
    upcoming = (
        next_fire(schedule, now, ZoneInfo(config.timezone)) if isinstance(schedule, Cron) else None
    )
    return upcoming, is_overdue(config, source, started.get(source), now)


def _next_cycle_text(
    config: Config, source: str, started: dict[str, datetime], now: datetime
) -> str:
    upcoming, overdue = _next_cycle(config, source, started, now)
    schedule = config.sources[source].schedule
    last = started.get(source)
    ran = (
        "never ran"
        if last is None
        else f"last ran {humanize_age((now - last).total_seconds())} ago"
    )
    if overdue:
        return f"OVERDUE ({schedule}; {ran}): the daemon catches up as soon as it runs"
    if upcoming is None:
        return f"{schedule}, counted from the daemon's start ({ran})"
    local = upcoming.astimezone(ZoneInfo(config.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    return f"in {humanize_age((upcoming - now).total_seconds())}, {local} ({schedule})"


def _as_json(
    config: Config, source: SourceFreshness, started: dict[str, datetime], now: datetime
) -> dict[str, Any]:
    data = asdict(source)
    upcoming, overdue = _next_cycle(config, source.source, started, now)
    data["next_cycle_at"] = None if upcoming is None else upcoming.isoformat()
    data["cycle_overdue"] = overdue
    data["max_age"] = format_seconds(source.max_age_seconds)
    degraded = degradation(config, source.source)
    data["placement_degraded"] = None if degraded is None else str(degraded)
    for site, counted in zip(data["sites"], source.sites, strict=True):
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
            _state(site),
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


def _state(site: SiteFreshness) -> str:
    if site.lost:
        return "[bold red]LOST[/]"
    if site.damaged:
        return "[bold red]DAMAGED[/]"
    return "[green]fresh[/]" if site.fresh else "[red]STALE[/]"


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
