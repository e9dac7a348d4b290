"""The top-level group; each command lives in its own module."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from firebreak import __version__
from firebreak.cli.common import DEFAULT_CONFIG, Exit, Options, fail, setup_logging

# name → module and function, and the command's first docstring sentence: a command's module
# (and what it alone needs: SQLAlchemy, APScheduler, prometheus_client, rich) is imported only
# when that command runs or shows its own help; `firebreak --help` lists them from here
# (tests/unit/test_cli_help.py keeps these sentences the commands' own).
COMMANDS = {
    "validate": (
        "validate:validate",
        "Check the config file, the files and variables it refers to, and the placement policy.",
    ),
    "backup": ("backup:backup", "Back up SOURCES to their sites now."),
    "status": (
        "status:status",
        "Freshness of every source at every site, and whether each source is safe.",
    ),
    "snapshots": ("snapshots:snapshots", "List the snapshots of SOURCE at each of its sites."),
    "db": ("db:db", "The run history database."),
    "placement": (
        "placement:placement",
        "Where each source's sites are, the policy's verdict, and what survives a disaster.",
    ),
    "run": ("run:run", "Run cycles on schedule until SIGTERM; SIGHUP reloads the config."),
    "exporter": (
        "exporter:exporter",
        "Serve /metrics, /healthz and /readyz from the run history until SIGTERM.",
    ),
    "restore": (
        "restore:restore",
        "Restore SOURCE into --target from the freshest site that can deliver it.",
    ),
    "check": (
        "check:check",
        "Check the repositories of SOURCE's sites (or of --site S): structure, and a rotating "
        "1/N of the pack data (check_read_data_subsets).",
    ),
    "forget": (
        "forget:forget",
        "Forget and prune SOURCE's old snapshots at its sites, as its retention says.",
    ),
    "drill": ("drill:drill", "Restore drills."),
    "site": ("site:site", "Decisions about one site (recorded in the run history)."),
    "restic": (
        "restic:restic",
        "Run restic ARGS at SITE: its repository, password and environment as firebreak uses "
        "them, never shown or put on the command line.",
    ),
}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # The history went away, or another process holds it locked, in the middle of a
            # command: say so, not a traceback. (Opening it is checked before: Exit.NOT_READY.)
            # A command that never imported SQLAlchemy cannot have met its errors, and need
            # not import it to learn so (status asking the daemon).
            raised_by = sys.modules.get("sqlalchemy.exc")
            if raised_by is None or not isinstance(exc, raised_by.DBAPIError):
                raise
            from firebreak.history.database import database_problem

            fail(f"the history database failed: {database_problem(exc)}", Exit.NOT_READY)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, without importing every command's module."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        # Cut as click cuts a command's own help.
        rows = [
            (name, click.Command(name, help=text).get_short_help_str(limit))
            for name, (_, text) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name][0].split(":")
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
