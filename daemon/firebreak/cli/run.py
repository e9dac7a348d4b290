"""``firebreak run``: the daemon, in the foreground (systemd runs it as Type=notify)."""

from __future__ import annotations

import logging

import click

from firebreak.cli.common import Options
from firebreak.daemon.service import Daemon


@click.command()
@click.pass_obj
def run(options: Options) -> None:
    """Run cycles on schedule until SIGTERM; SIGHUP reloads the config.

    Exit 0 after a clean stop, 2 on an invalid config or placement violation, 5 when restic
    or the database cannot be used.
    """
    if options.verbose == 0:  # a service logs its runs; -v adds nothing, -vv adds debug
        logging.getLogger().setLevel(logging.INFO)
    raise SystemExit(Daemon(options.config_path).run())
