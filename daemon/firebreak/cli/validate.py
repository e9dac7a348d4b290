"""``firebreak validate``: every problem in the config at once, then exit 0 only if none."""

from __future__ import annotations

import click

from firebreak.cli.common import Exit, Options, load


@click.command()
@click.pass_obj
def validate(options: Options) -> None:
    """Check the config file, and the files and variables it refers to."""
    config = load(options, check_environment=True)
    warnings = []
    for name, source in config.sources.items():
        for index, path in enumerate(source.paths):
            if not path.exists():
                warnings.append(f"sources.{name}.paths[{index}]: {path} does not exist (yet?)")
    used = {site for source in config.sources.values() for site in source.sites}
    for name in config.sites:
        if name not in used:
            warnings.append(f"sites.{name}: no source uses this site")
    for warning in warnings:
        click.echo(f"{options.config_path}: warning: {warning}")
    click.echo(
        f"{options.config_path}: valid ({len(config.sources)} sources, {len(config.sites)} sites)"
    )
    raise SystemExit(Exit.OK)
