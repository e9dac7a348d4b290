"""`firebreak --help` lists the commands without importing them: what it shows must be what
each command says of itself, and it must answer without the heavy imports."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from firebreak.cli.app import COMMANDS, cli


def test_the_listed_summaries_are_the_commands_own() -> None:
    ctx = click.Context(cli)
    for name, (_, summary) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None, name
        assert command.get_short_help_str(limit=1000) == summary, name


def test_help_lists_every_command_as_click_would() -> None:
    shown = CliRunner().invoke(cli, ["--help"], terminal_width=100)
    assert shown.exit_code == 0
    listed = shown.output.split("Commands:\n", 1)[1]
    for name in COMMANDS:
        assert f"\n  {name} " in f"\n{listed}", name
    assert "  status     Freshness of every source at every site, and whether each source" in listed


def test_version_and_help_import_nothing_heavy() -> None:
    """The start-up cost is imports: these stay out until a command needs them."""
    probe = (
        "import sys; from firebreak.cli.app import cli\n"
        "for argv in (['--version'], ['--help']):\n"
        "    try: cli.main(argv, prog_name='firebreak', standalone_mode=False)\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('sqlalchemy', 'pydantic', 'rich', 'apscheduler', "
        "'prometheus_client', 'firebreak.config') if m in sys.modules]\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
