"""The top-level group; each command lives in its own module."""

from __future__ import annotations

import os
from pathlib import Path

import click

from firebreak import __version__
from firebreak.cli import (
    backup,
    check,
    db,
    drill,
    exporter,
    forget,
    placement,
    restore,
    run,
    snapshots,
    status,
    validate,
)
from firebreak.cli.common import DEFAULT_CONFIG, Options, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("FIREBREAK_CONFIG", str(DEFAULT_CONFIG)),
    show_default=f"$FIREBREAK_CONFIG or {DEFAULT_CONFIG}",
    help="The config file.",
)
@click.option("-v", "--verbose", count=True, help="More log lines on stderr (-vv for debug).")
@click.version_option(__version__, prog_name="firebreak")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: int) -> None:
    """Back up every source with restic to three or more distinct sites, and prove it."""
    setup_logging(verbose)
    ctx.obj = Options(config_path=config_path, verbose=verbose)


cli.add_command(validate.validate)
cli.add_command(backup.backup)
cli.add_command(status.status)
cli.add_command(snapshots.snapshots)
cli.add_command(db.db)
cli.add_command(placement.placement)
cli.add_command(run.run)
cli.add_command(exporter.exporter)
cli.add_command(restore.restore)
cli.add_command(check.check)
cli.add_command(forget.forget)
cli.add_command(drill.drill)
