"""``firebreak db``: the run history's schema."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import click
from sqlalchemy import Engine

from firebreak.actions.prune import prune_history
from firebreak.cli.common import Exit, Options, fail, load
from firebreak.config.durations import format_duration
from firebreak.history.database import (
    DatabaseError,
    describe,
    make_engine,
    require_current,
    schema_state,
    upgrade,
)

T = TypeVar("T")


def _with_database(options: Options, use: Callable[[Engine], T]) -> tuple[Engine, T]:
    """The config's database and what ``use`` made of it; exit 5 saying why it cannot."""
    config = load(options)
    try:
        engine = make_engine(config.database_url)
        return engine, use(engine)
    except DatabaseError as exc:
        fail(str(exc), Exit.NOT_READY)


@click.group()
def db() -> None:
    """The run history database."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(options: Options) -> None:
    """Bring the database schema up to date (safe to run again)."""
    engine, before = _with_database(options, upgrade)
    if before.up_to_date:
        click.echo(f"{describe(engine)}: already at revision {before.head}")
    else:
        click.echo(
            f"{describe(engine)}: upgraded from {before.current or 'empty'} to {before.head}"
        )


@db.command("status")
@click.pass_obj
def db_status(options: Options) -> None:
    """Show the schema revision; exit 5 when the database needs `firebreak db upgrade`."""
    engine, state = _with_database(options, schema_state)
    word = "up to date" if state.up_to_date else "needs `firebreak db upgrade`"
    click.echo(
        f"{describe(engine)}: revision {state.current or 'none'}, newest {state.head}: {word}"
    )
    raise SystemExit(Exit.OK if state.up_to_date else Exit.NOT_READY)


@db.command("prune")
@click.pass_obj
def db_prune(options: Options) -> None:
    """Prune this host's runs older than database.keep_runs now (the daemon does it every
    hour); the newest run, success and verdict of every source at every site stay."""
    config = load(options)
    keep = config.database.keep_runs
    if keep is None:
        fail(
            f"{options.config_path}: database.keep_runs is not set: every run is kept", Exit.CONFIG
        )
    engine, pruned = _with_database(options, lambda engine: _prune(engine, config.host_name, keep))
    click.echo(
        f"{describe(engine)}: pruned {pruned} runs of {config.host_name} older than "
        f"{format_duration(keep)}"
    )


def _prune(engine: Engine, host: str, keep: timedelta) -> int:
    require_current(engine)
    return prune_history(engine, host, keep)
