"""A source that is a program's output: made once per cycle, stored at every site.

The dump is written once into ``STATE_DIR/dumps/SOURCE/`` (its stage), and every site's
``restic backup`` reads that directory, so every site holds the same point in time and the
database is read once, however many sites there are. A dump that fails, or is cut short, fails
the cycle at every site before any backup starts: a truncated dump is never a snapshot. The
stage is removed after the cycle, whatever happened. (docs/databases.md says why a stage and
not one stream fanned out to every site's ``restic backup --stdin``.)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

from firebreak.actions.runtime import Runtime
from firebreak.config.dumps import DATABASE_PATTERN, MariaDB, PostgreSQL, SQLite
from firebreak.config.model import Source
from firebreak.config.references import UnresolvedReference, resolve
from firebreak.history.records import last_processed_bytes
from firebreak.humanize import format_bytes
from firebreak.outcomes import DumpFailed, Failure, Interrupted
from firebreak.restic import runner
from firebreak.restic.commands import inherited
from firebreak.restic.result import ResticResult, StopReason

log = logging.getLogger(__name__)

# Room to leave on the stage's filesystem beyond the last dump's size.
SPACE_MARGIN = 1.1
SPACE_SPARE = 16 * 1024 * 1024
DUMP_KILL_GRACE = 10.0
# Databases that hold the server's own bookkeeping, not anyone's data.
MARIADB_SYSTEM = ("information_schema", "performance_schema", "mysql", "sys")


def stage_dir(rt: Runtime, source: str) -> Path:
    return rt.config.state_dir / "dumps" / source


@contextmanager
def staged_dump(
    rt: Runtime, source_name: str, cancel: threading.Event | None = None
) -> Iterator[Path]:
    """Make the source's dump in its stage and yield the stage; remove it afterwards, always.
    Raises DumpFailed (or Interrupted) when the dump cannot be made whole."""
    source = rt.config.sources[source_name]
    stage = stage_dir(rt, source_name)
    shutil.rmtree(stage, ignore_errors=True)  # whatever a killed daemon left
    try:
        stage.mkdir(parents=True, mode=0o700)
        _check_space(rt.engine, source_name, stage)
        Dumper(rt, source, stage, cancel).dump()
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _check_space(engine: Engine, source: str, stage: Path) -> None:
    """Refuse to start a dump the stage's filesystem cannot hold (judged by the last one)."""
    last = last_processed_bytes(engine, source)
    if last is None:
        return
    usage = shutil.disk_usage(stage)
    needed = int(last * SPACE_MARGIN) + SPACE_SPARE
    if usage.free < needed:
        raise DumpFailed(
            f"not enough space for the dump in {stage.parent}: about {format_bytes(needed)} "
            f"needed (the last dump was {format_bytes(last)}), {format_bytes(usage.free)} free"
        )


class Dumper:
    """Writes one source's dump files into its stage, by kind."""

    def __init__(
        self, rt: Runtime, source: Source, stage: Path, cancel: threading.Event | None
    ) -> None:
        self.rt = rt
        self.source = source
        self.stage = stage
        self.cancel = cancel

    def dump(self) -> None:
        source = self.source
        if source.postgresql is not None:
            self._postgresql(source.postgresql)
        elif source.mariadb is not None:
            self._mariadb(source.mariadb)
        elif source.sqlite is not None:
            self._sqlite(source.sqlite)
        elif source.command is not None:
            assert source.stdin_filename is not None
            self._run(
                tuple(source.command), "the command", stdout=self.stage / source.stdin_filename
            )
        else:
            raise AssertionError("a source of files has no dump")

    # -- PostgreSQL ---------------------------------------------------------------------

    def _postgresql(self, server: PostgreSQL) -> None:
        env = postgresql_env(server, DumpFailed)
        connect = connection_args(server)
        names = server.databases
        if names == "all":
            listed = self._run(
                (
                    "psql",
                    *connect,
                    "--no-password",
                    "--no-align",
                    "--tuples-only",
                    "--command",
                    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                    "ORDER BY datname",
                    "postgres",
                ),
                "listing the databases",
                env=env,
            )
            names = _safe_names([line.strip() for line in listed.stdout_lines if line.strip()])
        for name in names:
            self._run(
                (
                    "pg_dump",
                    *connect,
                    "--no-password",
                    "--format=custom",
                    f"--file={self.stage / f'{name}.pgdump'}",
                    name,
                ),
                f"pg_dump of {name}",
                env=env,
            )
        if server.with_globals:
            self._run(
                (
                    "pg_dumpall",
                    *connect,
                    "--no-password",
                    "--globals-only",
                    f"--file={self.stage / 'globals.sql'}",
                ),
                "pg_dumpall --globals-only",
                env=env,
            )

    # -- MariaDB / MySQL ----------------------------------------------------------------

    def _mariadb(self, server: MariaDB) -> None:
        dump = program("mariadb-dump", "mysqldump")
        client = program("mariadb", "mysql")
        # The private option file goes beside the stage, not into it: never backed up.
        with mariadb_options(server, self.stage.parent, DumpFailed) as connect:
            names = server.databases
            if names == "all":
                listed = self._run(
                    (
                        client,
                        *connect,
                        "--batch",
                        "--skip-column-names",
                        "--execute",
                        "SHOW DATABASES",
                    ),
                    "listing the databases",
                )
                names = _safe_names(
                    [
                        line.strip()
                        for line in listed.stdout_lines
                        if line.strip() and line.strip() not in MARIADB_SYSTEM
                    ]
                )
            for name in names:
                self._run(
                    (
                        dump,
                        *connect,
                        "--single-transaction",
                        "--quick",
                        "--routines",
                        "--events",
                        "--triggers",
                        f"--result-file={self.stage / f'{name}.sql'}",
                        name,
                    ),
                    f"{dump} of {name}",
                )

    # -- SQLite -------------------------------------------------------------------------

    def _sqlite(self, database: SQLite) -> None:
        """SQLite's own online backup: a consistent copy even while the database is written."""
        target = self.stage / database.path.name
        try:
            source = sqlite3.connect(f"file:{database.path}?mode=ro", uri=True, timeout=60)
        except sqlite3.Error as exc:
            raise DumpFailed(f"cannot open {database.path}: {exc}") from None
        try:
            with sqlite3.connect(target) as copy:
                source.backup(copy, pages=4096, progress=self._sqlite_progress)
            copy.close()
        except sqlite3.Error as exc:
            raise DumpFailed(f"copying {database.path} failed: {exc}") from None
        finally:
            source.close()

    def _sqlite_progress(self, _status: int, _remaining: int, _total: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Interrupted("the dump was stopped on request")

    # -- running the programs -----------------------------------------------------------

    def _run(
        self,
        argv: tuple[str, ...],
        what: str,
        *,
        env: dict[str, str] | None = None,
        stdout: Path | None = None,
    ) -> ResticResult:
        invocation = runner.Invocation(
            argv=argv,
            env=env if env is not None else inherited(os.environ),
            command="dump",
            stdout_path=stdout,
            unavailable=DumpFailed,
        )
        source = self.source
        result = runner.run(
            invocation,
            timeout=source.dump_timeout.total_seconds(),
            stall_timeout=source.dump_stall_timeout.total_seconds(),
            cancel=self.cancel,
            kill_grace=DUMP_KILL_GRACE,
        )
        if result.stop_reason is StopReason.CANCELLED:
            raise Interrupted(f"{what} was stopped on request")
        if result.stop_reason is not StopReason.NONE:
            raise DumpFailed(f"{what} was stopped: {result.stop_reason.value}")
        if result.exit_code != 0:
            said = next((line for line in reversed(result.stderr_tail) if line.strip()), "")
            raise DumpFailed(f"{what} exited {result.exit_code}" + (f": {said}" if said else ""))
        return result


def load_instructions(source: Source, target: Path) -> list[str]:
    """How to load the dump files a restore wrote into target (docs/databases.md has the
    whole recovery). Nothing for a source of files."""
    lines = []
    if source.postgresql is not None:
        connect = " ".join(connection_args(source.postgresql))
        connect = f"{connect} " if connect else ""
        globals_file = target / "globals.sql"
        if globals_file.exists():
            lines.append(f"  roles first:  psql {connect}--file={globals_file} postgres")
        for dump in sorted(target.glob("*.pgdump")):
            name = dump.stem
            lines.append(
                f"  {name}:  createdb {connect}{name} && "
                f"pg_restore {connect}--dbname={name} --exit-on-error {dump}"
            )
    elif source.mariadb is not None:
        client = program("mariadb", "mysql")
        for dump in sorted(target.glob("*.sql")):
            name = dump.stem
            lines.append(
                f"  {name}:  {client} --execute 'CREATE DATABASE `{name}`' && "
                f"{client} {name} < {dump}"
            )
    elif source.sqlite is not None:
        copy = target / source.sqlite.path.name
        lines.append(
            f"  stop what writes {source.sqlite.path}, then:  cp {copy} {source.sqlite.path}"
        )
    elif source.command is not None and source.stdin_filename is not None:
        lines.append(
            f"  {target / source.stdin_filename} is what `{' '.join(source.command)}` printed: "
            "load it with that program's own restore tool"
        )
    return ["to load the dump:", *lines] if lines else []


def connection_args(server: PostgreSQL | MariaDB) -> tuple[str, ...]:
    """Where the server is and who logs in (never a password: see postgresql_env and
    mariadb_options)."""
    found: list[str] = []
    if server.host is not None:
        found.append(f"--host={server.host}")
    if server.port is not None:
        found.append(f"--port={server.port}")
    if server.user is not None:
        flag = "--username" if isinstance(server, PostgreSQL) else "--user"
        found.append(f"{flag}={server.user}")
    if isinstance(server, MariaDB) and server.socket is not None:
        found.append(f"--socket={server.socket}")
    return tuple(found)


def postgresql_env(server: PostgreSQL, failure: type[Failure]) -> dict[str, str]:
    """The environment of a PostgreSQL program: its password file or password, never argv."""
    env = inherited(os.environ)
    env["PGAPPNAME"] = "firebreak"
    env["PGCONNECT_TIMEOUT"] = "30"
    if server.passfile is not None:
        env["PGPASSFILE"] = str(server.passfile)
    if server.password is not None:
        env["PGPASSWORD"] = _secret(server.password, failure)
    return env


@contextmanager
def mariadb_options(
    server: MariaDB, private: Path, failure: type[Failure]
) -> Iterator[tuple[str, ...]]:
    """The arguments of a MariaDB program: --defaults-extra-file first (the configured one,
    or a private one in ``private`` holding the password, never argv; removed after), then
    where the server is."""
    options: tuple[str, ...] = ()
    name = None
    if server.password is not None:
        lines = [f"!include {server.defaults_file}"] if server.defaults_file else []
        lines += ["[client]", f"password={_secret(server.password, failure)}"]
        handle, name = tempfile.mkstemp(prefix=".mariadb-", dir=private)
        os.write(handle, ("\n".join(lines) + "\n").encode())
        os.close(handle)
        options = (f"--defaults-extra-file={name}",)
    elif server.defaults_file is not None:
        options = (f"--defaults-extra-file={server.defaults_file}",)
    try:
        yield (*options, *connection_args(server))
    finally:
        if name is not None:
            Path(name).unlink(missing_ok=True)


def _secret(reference: str, failure: type[Failure]) -> str:
    try:
        return resolve(reference, Path("/"))
    except UnresolvedReference as exc:
        raise failure(f"the password: {exc}") from None


def _safe_names(names: list[str]) -> list[str]:
    """Names a server listed, checked as configured ones are: each becomes an argument and a
    file name, so none may look like an option or a path."""
    odd = [name for name in names if not re.fullmatch(DATABASE_PATTERN, name)]
    if odd:
        raise DumpFailed(
            f"cannot dump database(s) {', '.join(map(repr, odd))} safely by name: list the "
            "databases to dump instead of all"
        )
    return names


def program(*names: str) -> str:
    """The first of these programs on PATH (MariaDB's names, then MySQL's)."""
    for name in names:
        if shutil.which(name) is not None:
            return name
    return names[0]  # the runner says it cannot be started
