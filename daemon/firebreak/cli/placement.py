"""``firebreak placement``: where each source's copies are, and what survives losing a place."""

from __future__ import annotations

import click
from rich.table import Table

from firebreak.cli.common import Exit, Options, check_names, console, fail, load, new_table
from firebreak.config.model import Config, Location
from firebreak.placement.check import PlacementReport, check_placement
from firebreak.placement.policy import effective_policy, offsite
from firebreak.placement.targets import site_target
from firebreak.placement.whatif import (
    LOSS_KEYS,
    Loss,
    degradation,
    required_domains,
    simulate,
    what_if,
)


def print_report(options: Options, report: PlacementReport) -> None:
    """Violations (errors on stderr), warnings loudly, notes quietly; shared with validate."""
    for to_stderr, line in report.lines(options.config_path):
        click.echo(line, err=to_stderr)


@click.command()
@click.argument("source", required=False)
@click.option(
    "--lose",
    "losses",
    multiple=True,
    metavar="KEY=VALUE",
    help=f"Simulate losing every site with this {', '.join(LOSS_KEYS)} (repeatable).",
)
@click.option("--offline", is_flag=True, help="No DNS lookups and no questions to the sites.")
@click.pass_obj
def placement(options: Options, source: str | None, losses: tuple[str, ...], offline: bool) -> None:
    """Where each source's sites are, the policy's verdict, and what survives a disaster.

    With --lose, show which sources would be left without min_fresh_sites sites (exit 4 if
    any). Without it, exit 2 when the policy is violated in error mode.
    """
    config = load(options, check_environment=not offline)
    names = [source] if source else list(config.sources)
    check_names(options, config, names)
    try:
        parsed = [Loss.parse(text) for text in losses]
    except ValueError as exc:
        fail(str(exc), Exit.CONFIG)
    unknown = [why for loss in parsed if (why := loss.unknown(config))]
    if unknown:
        fail("; ".join(unknown), Exit.CONFIG)
    out = console()
    if parsed:
        outcomes = [o for o in simulate(config, parsed) if o.source in names]
        table = new_table(title=f"after losing {', '.join(map(str, parsed))}", title_justify="left")
        for column in ("source", "lost", "surviving", "needs", "verdict"):
            table.add_column(column, overflow="fold")
        for item in outcomes:
            table.add_row(
                item.source,
                ", ".join(item.lost) or "-",
                ", ".join(item.surviving) or "-",
                str(item.required),
                "[green]safe[/]" if item.safe else "[bold red]UNSAFE[/]",
            )
        out.print(table)
        raise SystemExit(Exit.OK if all(item.safe for item in outcomes) else Exit.FAILED)

    report = check_placement(
        config, sources=names, resolve_hosts=not offline, probe_repositories=not offline
    )
    for name in names:
        out.print(_sites_table(config, name))
        out.print(_what_if_table(config, name))
        out.print(placement_verdict(config, name), soft_wrap=True)
    if config.location is None:
        out.print(
            "[dim]This host's location is not set (location: in the config): offsite copies "
            "are not counted, and losing its datacenter is not in the table.[/]",
            soft_wrap=True,
        )
    print_report(options, report)
    raise SystemExit(Exit.CONFIG if report.errors else Exit.OK)


def _sites_table(config: Config, source: str) -> Table:
    table = new_table(title=f"{source}: where its copies are", title_justify="left")
    host = config.location
    columns = ["site", "provider", "region", "datacenter", "country", "lat, lon", "reached at"]
    for column in [*columns, "offsite"] if host is not None else columns:
        table.add_column(column, overflow="fold")

    def place(location: Location) -> list[str]:
        coordinates = f"{location.lat:g}, {location.lon:g}" if location.lat is not None else "-"
        fields = (location.provider, location.region, location.datacenter)
        return [*fields, location.country.upper(), coordinates]

    km = effective_policy(config, source).offsite_km
    if host is not None:
        table.add_row(f"({config.host_name}, this host)", *place(host), "-", "-")
    for name in config.sources[source].sites:
        location = config.sites[name].location
        target = site_target(config.sites[name])
        reached = target.path if target.kind == "local" else (target.host or target.backend)
        row = [name, *place(location), reached]
        if host is not None:
            verdict = offsite(host, location, km)
            row.append({True: "yes", False: "[bold]no[/]", None: "? (no lat/lon)"}[verdict])
        table.add_row(*row)
    return table


def _what_if_table(config: Config, source: str) -> Table:
    required = config.sources[source].required_fresh_sites
    must = required_domains(config, source)
    table = new_table(
        title=f"{source}: what if one place is lost (needs {required} sites)",
        title_justify="left",
    )
    for column in ("lose", "sites lost", "surviving", "min_fresh_sites"):
        table.add_column(column, overflow="fold")
    for row in what_if(config, source):
        outcome = row.outcome
        if outcome.safe:
            shown = "[green]holds[/]"
        elif row.domain in must:
            shown = "[bold red]BROKEN[/]"
        else:
            shown = "[yellow]short[/] (the policy does not ask to survive this)"
        lose = f"{row.domain}={row.value}" + (" (this host)" if row.host else "")
        table.add_row(lose, ", ".join(outcome.lost) or "-", str(len(outcome.surviving)), shown)
    return table


def placement_verdict(config: Config, source: str) -> str:
    """One line: does the source survive losing any one place its policy names?"""
    degraded = degradation(config, source)
    if degraded:
        return f"{source}: placement [bold red]DEGRADED[/]: {degraded}"
    must = " or ".join(required_domains(config, source))
    return f"{source}: placement [green]holds[/]: it survives losing any one {must}"
