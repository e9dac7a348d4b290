"""The ``firebreak`` command: one module per command group."""

from __future__ import annotations

import sys

from firebreak.cli.app import cli


def main() -> None:
    sys.exit(cli.main(prog_name="firebreak", standalone_mode=True))
