"""``firebreak db``: the run history's schema, retention, and moving it into a fleet's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from firebreak.actions.prune import prune_history
from firebreak.cli.common import Exit, Options, fail, load
from firebreak.config.durations import format_duration
from firebreak.history import hosts
from firebreak.history.copy import CopyRefused, copy_host
from firebreak.history.database import (
    DatabaseError,
    describe,
    make_engine,
    require_current,
    schema_state,
    upgrade,
)
from firebreak.humanize import plural

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


@db.command("forget-host")
@click.argument("name")
@click.pass_obj
def db_forget_host(options: Options, name: str) -> None:
    """A host is gone for good: remove its heartbeat, so `status --fleet` and the fleet
    exporter stop showing it (and FirebreakHostSilent stops firing). Its runs stay."""
    engine, known = _with_database(options, lambda engine: _forget(engine, name))
    if not known:
        fail(f"no host {name!r} has recorded a heartbeat in {describe(engine)}", Exit.CONFIG)
    click.echo(f"{describe(engine)}: {name} forgotten (its runs stay in the history)")


def _forget(engine: Engine, name: str) -> bool:
    require_current(engine)
    return hosts.forget(engine, name)


@db.command("copy")
@click.option(
    "--to",
    "target_url",
    required=True,
    help=(
        "The database to copy into (a fleet's PostgreSQL). No password here: libpq's "
        "PGPASSWORD or ~/.pgpass, or a ${VAR} reference (quoted) to an environment variable."
    ),
)
@click.pass_obj
def db_copy(options: Options, target_url: str) -> None:
    """Copy this host's history (database.url) into another database, losing nothing; run it
    again and nothing is copied twice. Stop the daemon first; then point database.url at the
    new one."""
    config = load(options)
    host = config.host_name
    try:
        given = make_url(target_url)
    except Exception:
        given = None
    if given is not None and given.password is not None and "${" not in str(given.password):
        fail(
            "--to holds a password, which would be seen in the process list and the shell's "
            "history: use PGPASSWORD, ~/.pgpass or a ${VAR} reference instead",
            Exit.CONFIG,
        )
    try:
        source = make_engine(config.database_url)
        target = make_engine(target_url)
        if describe(source) == describe(target):
            fail(f"--to is this host's own history ({describe(source)})", Exit.CONFIG)
        require_current(source)
        require_current(target)
        copied = copy_host(source, target, host)
    except CopyRefused as exc:
        fail(str(exc), Exit.NOT_READY)
    except DatabaseError as exc:
        fail(str(exc), Exit.NOT_READY)
    click.echo(
        f"copied {plural(copied.runs, 'run')}, {plural(copied.cycles, 'cycle')} and "
        f"{plural(copied.repositories, 'recorded repository', 'recorded repositories')} of "
        f"{host} into {describe(target)}"
        + (f" ({copied.already} were there already)" if copied.already else "")
    )
    click.echo(f"next: set database.url to it in {options.config_path}, and start the daemon")
