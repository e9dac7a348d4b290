"""The engine and the schema's state: SQLite (WAL, foreign keys) by default, PostgreSQL for fleets.

Alembic's migrations ship inside the package (``firebreak.migrations``), so an installed
firebreak can upgrade its own database: ``firebreak db upgrade``.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from firebreak.config.references import interpolate

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# The newest revision in firebreak/migrations/versions (a test keeps the two equal). Every
# command checks the schema against it; Alembic itself, slow to import, is loaded only to
# migrate.
SCHEMA_HEAD = "0004"

# The advisory lock fleet hosts take to change the schema of a shared PostgreSQL history.
MIGRATION_LOCK = 0x66697265627265  # "firebre"

log = logging.getLogger(__name__)


class DatabaseError(Exception):
    """The run history cannot be used; the message says what to do."""


def database_problem(exc: Exception) -> str:
    """One line for a person from a database driver's error, with what to look at."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if "database is locked" in text:
        return (
            f"{text}: another process has held the SQLite history locked for 30 s (a second "
            "firebreak writing to it, a sqlite3 shell in a transaction?)"
        )
    return text


class DatabaseBehind(DatabaseError):
    pass


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite history, or None for other databases."""
    try:
        parsed = make_url(interpolate(url))
    except Exception:  # make_engine reports it
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    """An engine for the history database; creates the SQLite file's directory."""
    try:
        parsed = make_url(interpolate(url))
    except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError alike
        raise DatabaseError(f"database.url is not a database URL: {exc}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the directory of {parsed.database}: {exc.strerror}"
                ) from None
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            # A server that stops answering (a partition, a dropped route) fails a connect
            # in seconds and an unanswered request within half a minute, not after the
            # kernel's minutes of retries; the URL's own settings win.
            bounds = {"connect_timeout": "10", "tcp_user_timeout": "30000"}
            kwargs["connect_args"] = {
                name: value for name, value in bounds.items() if name not in parsed.query
            }
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as exc:  # unknown dialect, missing driver (psycopg not installed) ...
        raise DatabaseError(
            f"cannot use database.url {parsed.render_as_string(hide_password=True)}: {exc}"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def describe(engine: Engine) -> str:
    """The URL with its password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


def migrations_dir() -> Path:
    return Path(str(resources.files("firebreak.migrations")))


def alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    return cfg


def schema_state(engine: Engine) -> SchemaState:
    try:
        with engine.connect() as connection:
            current = _current_revision(connection)
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot open the database {describe(engine)}: {_reason(exc)}"
        ) from None
    return SchemaState(current=current, head=SCHEMA_HEAD)


def schema_advice(state: SchemaState) -> str:
    """What a history that is not at this firebreak's revision needs, in one line."""
    if state.current is None:
        return (
            "the database holds no firebreak history yet: nothing has run, or it needs "
            "`firebreak db upgrade`"
        )
    return (
        f"the history is at revision {state.current}, this firebreak reads {state.head}: "
        "run `firebreak db upgrade` (or upgrade firebreak, if the history is newer)"
    )


def _current_revision(connection: Connection) -> str | None:
    """The revision Alembic recorded (its alembic_version table), or None."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(revision) if revision is not None else None


def upgrade(engine: Engine) -> SchemaState:
    """Bring the schema to the newest revision; returns the state before."""
    with _migrating(engine):
        return _upgrade(engine)


def _upgrade(engine: Engine) -> SchemaState:
    before = schema_state(engine)
    if not before.up_to_date:
        log.info(
            "upgrading database %s from %s to %s", describe(engine), before.current, before.head
        )
        from alembic import command

        command.upgrade(alembic_config(engine), "head")
    return before


def require_current(engine: Engine) -> None:
    """Make sure the schema is the one this firebreak expects.

    A database with no tables at all is created on the spot (there is nothing in it to
    lose); one at an older revision needs ``firebreak db upgrade``, an operator's decision,
    because on PostgreSQL several hosts may share it.
    """
    if engine.dialect.name != "sqlite" and schema_state(engine).up_to_date:
        return  # the usual case, without waiting for a fleet's lock
    with _migrating(engine):
        # Looked at while no other firebreak changes it: two commands started at once on a
        # new history must not both create its tables. (SQLite looks only under the lock: a
        # first connection to a history being created can find it locked.)
        state = schema_state(engine)
        if state.up_to_date:
            return
        if state.current is None:
            with engine.connect() as connection:
                tables = inspect(connection).get_table_names()
            if not tables:
                _upgrade(engine)
                return
    if state.up_to_date:
        return
    if state.current is None:
        raise DatabaseBehind(
            f"the database {describe(engine)} has tables but no firebreak schema version: "
            "is database.url pointing at another application's database?"
        )
    if not _known_revision(engine, state.current):
        raise DatabaseBehind(
            f"the database {describe(engine)} is at revision {state.current}, newer than this "
            "firebreak knows: upgrade firebreak on this host"
        )
    raise DatabaseBehind(
        f"the database {describe(engine)} is at revision {state.current}, this firebreak needs "
        f"{state.head}: run `firebreak db upgrade`"
    )


@contextmanager
def _migrating(engine: Engine) -> Iterator[None]:
    """One firebreak at a time looks at the schema to change it, on this host (SQLite: a lock
    file beside the history) or across a fleet (PostgreSQL: an advisory lock)."""
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    if path is not None:
        try:
            fd = os.open(f"{path}.migrate-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:  # a reader without write access: it cannot change the schema anyway
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
    elif engine.dialect.name == "postgresql":
        try:
            connection = engine.connect()
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        except SQLAlchemyError as exc:
            raise DatabaseError(
                f"cannot open the database {describe(engine)}: {_reason(exc)}"
            ) from None
        try:
            yield
        finally:
            with connection:  # closing the session releases its advisory lock in any case
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()
    else:
        yield


def _known_revision(engine: Engine, revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    scripts = ScriptDirectory.from_config(alembic_config(engine))
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _reason(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def upsert(
    session: Session,
    table: type[Any],
    key: dict[str, Any],
    values: dict[str, Any],
    on_conflict: dict[str, Any],
) -> None:
    """Insert a row, or update the one with that key (SQLite and PostgreSQL alike)."""
    # Imported here, only the one written with: loading PostgreSQL's dialect costs tens of ms.
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(table).values(**key, **values)
    if on_conflict:
        statement = statement.on_conflict_do_update(index_elements=list(key), set_=on_conflict)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key))
    session.execute(statement)
