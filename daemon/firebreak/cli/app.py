"""The top-level group; each command lives in its own module."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import click

from firebreak import __version__
from firebreak.cli.common import DEFAULT_CONFIG, Exit, Options, fail, setup_logging

# name → module and function: a command's module (and what it alone needs: APScheduler,
# prometheus_client, rich's progress bars) is imported only when that command runs.
COMMANDS = {
    "validate": "validate:validate",
    "backup": "backup:backup",
    "status": "status:status",
    "snapshots": "snapshots:snapshots",
    "db": "db:db",
    "placement": "placement:placement",
    "run": "run:run",
    "exporter": "exporter:exporter",
    "restore": "restore:restore",
    "check": "check:check",
    "forget": "forget:forget",
    "drill": "drill:drill",
    "site": "site:site",
    "restic": "restic:restic",
}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        from sqlalchemy.exc import DBAPIError

        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            # The history went away, or another process holds it locked, in the middle of a
            # command: say so, not a traceback. (Opening it is checked before: Exit.NOT_READY.)
            from firebreak.history.database import database_problem

            fail(f"the history database failed: {database_problem(exc)}", Exit.NOT_READY)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, name = target.split(":")
        command = getattr(importlib.import_module(f"firebreak.cli.{module}"), name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
