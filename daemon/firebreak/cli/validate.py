"""``firebreak validate``: every problem in the config at once, then exit 0 only if none."""

from __future__ import annotations

import click

from firebreak.cli.common import Exit, Options, load
from firebreak.cli.placement import print_report
from firebreak.humanize import plural
from firebreak.placement.check import check_placement
from firebreak.placement.whatif import degradation


@click.command()
@click.option(
    "--offline",
    is_flag=True,
    help="Skip the placement checks that need the network (DNS, asking sites for their id).",
)
@click.pass_obj
def validate(options: Options, offline: bool) -> None:
    """Check the config file, the files and variables it refers to, and the placement policy.

    Exit 0 when the config can be used, 2 when not (every problem is listed).
    """
    config = load(options, check_environment=True)
    report = check_placement(config, resolve_hosts=not offline, probe_repositories=not offline)
    print_report(options, report)
    if report.errors:
        click.echo(
            f"{plural(len(report.errors), 'placement violation')} in {options.config_path}",
            err=True,
        )
        raise SystemExit(Exit.CONFIG)
    warnings = []
    for name, source in config.sources.items():
        for index, path in enumerate(source.paths):
            if not path.exists():
                warnings.append(f"sources.{name}.paths[{index}]: {path} does not exist (yet?)")
    for name in config.sources:
        degraded = degradation(config, name)
        if degraded is not None:
            warnings.append(
                f"sources.{name}: placement degraded: {degraded} "
                "(FirebreakPlacementDegraded will fire; add a site, or lower min_fresh_sites)"
            )
    used = {site for source in config.sources.values() for site in source.sites}
    for name in config.sites:
        if name not in used:
            warnings.append(f"sites.{name}: no source uses this site")
    for warning in warnings:
        click.echo(f"{options.config_path}: warning: {warning}")
    click.echo(
        f"{options.config_path}: valid ({plural(len(config.sources), 'source')}, "
        f"{plural(len(config.sites), 'site')})"
    )
    raise SystemExit(Exit.OK)
