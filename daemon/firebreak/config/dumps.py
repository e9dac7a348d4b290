"""Sources that are a program's output rather than files: database dumps, and any command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from firebreak.config.base import Strict, checking, readable_file
from firebreak.config.references import ENV_ONLY, check_reference, is_file_reference

# A database name firebreak puts in a file name and on a command line: no path, no option.
DATABASE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}$"
Database = Annotated[str, Field(pattern=DATABASE_PATTERN)]
FILE_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"


class _Server(Strict):
    """How to reach a database server; credentials never go on a command line."""

    databases: list[Database] | Literal["all"] = Field(
        description="The databases to dump, one file each, or all (every database there).",
        examples=[["app", "billing"]],
    )
    host: str | None = Field(
        default=None,
        description="Server host name or address, or a Unix socket directory (default: local).",
        examples=["/run/postgresql"],
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="Server port.")
    user: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$", description="User to log in as."
    )
    password: str | None = Field(
        default=None,
        description=(
            "The password as an ${ENV_VAR}, file: or credential:NAME reference, handed to the "
            "dump program in its environment (PostgreSQL) or an option file on a pipe "
            "(MariaDB): never in its arguments, never on disk. Prefer the server's own files "
            "(passfile, defaults_file) or peer authentication."
        ),
    )
    scratch_database: Database | None = Field(
        default=None,
        description=(
            "A database restore drills may drop, re-create and load each dump into, then count "
            "its rows. Never one of the dumped databases. Without it, drills check that each "
            "dump is readable by its own tool."
        ),
        examples=["firebreak_drill"],
    )

    @field_validator("password")
    @classmethod
    def _reference(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not (ENV_ONLY.match(value) or is_file_reference(value)):
            raise ValueError(
                "a password is never written in the config: use an ${ENV_VAR}, file: or "
                "credential:NAME reference"
            )
        if checking(info):
            why = check_reference(value, Path("/"))
            if why:
                raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _scratch_is_not_dumped(self) -> _Server:
        if isinstance(self.databases, list) and self.scratch_database in self.databases:
            raise ValueError(
                f"scratch_database {self.scratch_database!r} is one of the dumped databases: "
                "drills drop it"
            )
        return self


class PostgreSQL(_Server):
    """Databases of a PostgreSQL server: ``pg_dump --format=custom``, one file per database
    (``NAME.pgdump``), and the roles and tablespaces (``globals.sql``, ``pg_dumpall
    --globals-only``)."""

    passfile: Path | None = Field(
        default=None,
        description="A .pgpass file for the password (PGPASSFILE); relative to this file.",
    )
    globals: bool | None = Field(
        default=None,
        description=(
            "Also dump roles and tablespaces (globals.sql; needs a superuser). "
            "Default: with databases: all."
        ),
    )

    _passfile = field_validator("passfile")(lambda value, info: readable_file(value, info))

    @property
    def with_globals(self) -> bool:
        return self.globals if self.globals is not None else self.databases == "all"


class MariaDB(_Server):
    """Databases of a MariaDB or MySQL server: ``mariadb-dump --single-transaction`` (or
    ``mysqldump``), one file per database (``NAME.sql``)."""

    socket: Path | None = Field(default=None, description="The server's Unix socket.")
    defaults_file: Path | None = Field(
        default=None,
        description=(
            "An option file with the credentials ([client] user=, password=), passed as "
            "--defaults-extra-file; relative to this file."
        ),
        examples=["/etc/firebreak/mariadb.cnf"],
    )

    _defaults_file = field_validator("defaults_file")(
        lambda value, info: readable_file(value, info)
    )


class SQLite(Strict):
    """An SQLite database, copied with SQLite's online backup (never a copy of a file that is
    being written), as ``NAME`` (the file's own name)."""

    path: Path = Field(description="The database file; relative to this file.")

    _database = field_validator("path")(lambda value, info: readable_file(value, info))


DumpKind = Literal["postgresql", "mariadb", "sqlite", "command"]
