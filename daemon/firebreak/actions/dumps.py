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
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

from firebreak.actions.flocks import LockWaitCancelled, if_free, site_lock
from firebreak.actions.programs import failure_of
from firebreak.actions.runtime import Runtime
from firebreak.config.dumps import DATABASE_PATTERN, MariaDB, PostgreSQL, SQLite
from firebreak.config.model import Source
from firebreak.config.references import UnresolvedReference, resolve
from firebreak.history.records import last_processed_bytes
from firebreak.history.unwritten import HISTORY_ERRORS
from firebreak.humanize import format_bytes, format_seconds, plural
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
# SQLite's online backup, in a process of its own so that the dump's timeout, stall timeout
# and a stop on request apply to it as to every dump program. One step: the copy is of one
# moment, and a busy database cannot make it start over and over. Read-only: a WAL database
# needs its -shm file, which this user may not be able to create (the application's
# directory is not writable by the service): when the application is stopped and has left no
# -wal, the file alone is the database, and it is read without SQLite's locking, checked
# unchanged after; else the error says what to grant.
SQLITE_BACKUP = """
import os, sqlite3, sys
uri, target, path = sys.argv[1:4]

def copy(source_uri):
    source = sqlite3.connect(source_uri, uri=True, timeout=60)
    try:
        with sqlite3.connect(target) as out:
            source.backup(out, pages=-1)
        out.close()
    finally:
        source.close()

def unchanged():
    found = os.stat(path)
    return found.st_size, found.st_mtime_ns

try:
    try:
        copy(uri)
    except sqlite3.OperationalError as exc:
        wal = path + "-wal"
        if "readonly" not in str(exc) and "unable to open" not in str(exc):
            raise
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            sys.exit(
                f"{path} is in WAL mode and this user cannot create its -shm file: give it "
                "write access to the database's directory, or stop the application first "
                "(a before hook) so that SQLite folds its -wal file back in"
            )
        if os.path.exists(target):
            os.unlink(target)
        before = unchanged()
        copy(uri + "&immutable=1")
        if unchanged() != before or os.path.exists(wal):
            sys.exit(f"{path} was written while it was read without SQLite's locking")
except sqlite3.Error as exc:
    sys.exit(f"{path}: {exc}")
"""


def stage_dir(rt: Runtime, source: str) -> Path:
    return rt.config.state_dir / "dumps" / source


def stage_locks(rt: Runtime) -> Path:
    """One lock per dump source: its cycles take turns with its stage."""
    return rt.locks_dir / "sources"


@contextmanager
def staged_dump(
    rt: Runtime, source_name: str, cancel: threading.Event | None = None
) -> Iterator[Path]:
    """Make the source's dump in its stage and yield the stage; remove it afterwards, always.
    The source's lock is held throughout: a second cycle of the source (a manual backup
    beside the daemon's) waits for the first to end. Raises DumpFailed (or Interrupted) when
    the dump cannot be made whole."""
    source = rt.config.sources[source_name]
    stage = stage_dir(rt, source_name)
    try:
        with site_lock(stage_locks(rt), source_name, "dump and backup", cancel):
            shutil.rmtree(stage, ignore_errors=True)  # whatever a killed firebreak left
            try:
                stage.mkdir(parents=True, mode=0o700)
                _check_space(rt.engine, source_name, stage, rt.host)
                Dumper(source, stage, cancel).dump()
                yield stage
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    except LockWaitCancelled as exc:
        raise Interrupted(str(exc)) from None


def remove_leftover_stages(rt: Runtime) -> None:
    """Stages a killed firebreak left (a dump can be as large as the database): removed at
    start, each only while nobody is using it."""
    root = rt.config.state_dir / "dumps"
    if not root.is_dir():
        return
    for stage in sorted(root.iterdir()):
        with if_free(stage_locks(rt), stage.name, "removing a leftover stage") as free:
            if free:
                log.info("removing %s, left by a firebreak that was stopped mid-cycle", stage)
                shutil.rmtree(stage, ignore_errors=True)


def _check_space(engine: Engine, source: str, stage: Path, host: str) -> None:
    """Refuse to start a dump the stage's filesystem cannot hold (judged by the last one;
    while the history is away, not judged: a dump that does not fit fails by itself)."""
    try:
        last = last_processed_bytes(engine, source, host=host)
    except HISTORY_ERRORS:
        return
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

    def __init__(self, source: Source, stage: Path, cancel: threading.Event | None) -> None:
        self.source = source
        self.stage = stage
        self.cancel = cancel
        self.deadline = time.monotonic() + source.dump_timeout.total_seconds()

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
                tuple(source.command),
                f"the command {Path(source.command[0]).name}",
                stdout=self.stage / source.stdin_filename,
            )
        else:
            raise AssertionError("a source of files has no dump")

    # -- PostgreSQL ---------------------------------------------------------------------

    def _postgresql(self, server: PostgreSQL) -> None:
        env = postgresql_env(server, DumpFailed)
        secrets = _secrets(env.get("PGPASSWORD"))
        connect = connection_args(server)
        names = server.databases
        if names == "all":
            listed = self._run(
                (
                    "psql",
                    *connect,
                    "--no-password",
                    "--no-psqlrc",
                    "--no-align",
                    "--tuples-only",
                    "--command",
                    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                    "ORDER BY datname",
                    "postgres",
                ),
                "listing the databases",
                env=env,
                secrets=secrets,
            )
            names = _safe_names(
                [line.strip() for line in listed.stdout_lines if line.strip()], server
            )
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
                secrets=secrets,
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
                secrets=secrets,
            )

    # -- MariaDB / MySQL ----------------------------------------------------------------

    def _mariadb(self, server: MariaDB) -> None:
        dump = program("mariadb-dump", "mysqldump")
        client = program("mariadb", "mysql")
        login = MariaDBLogin(server, DumpFailed)
        names = server.databases
        if names == "all":
            listed = self._run(
                (
                    client,
                    *login.args,
                    "--batch",
                    "--skip-column-names",
                    "--execute",
                    "SHOW DATABASES",
                ),
                "listing the databases",
                env=login.env(),
                login=login,
            )
            names = _safe_names(
                [
                    line.strip()
                    for line in listed.stdout_lines
                    if line.strip() and line.strip() not in MARIADB_SYSTEM
                ],
                server,
            )
        for name in names:
            self._run(
                (
                    dump,
                    *login.args,
                    "--single-transaction",
                    "--quick",
                    "--comments",  # its last line says the dump completed: drills read it
                    "--routines",
                    "--events",
                    "--triggers",
                    f"--result-file={self.stage / f'{name}.sql'}",
                    name,
                ),
                f"{dump} of {name}",
                env=login.env(),
                login=login,
            )

    # -- SQLite -------------------------------------------------------------------------

    def _sqlite(self, database: SQLite) -> None:
        """SQLite's own online backup: a consistent copy even while the database is written
        (read-only: firebreak never writes the live database)."""
        self._run(
            (
                sys.executable,
                "-I",
                "-c",
                SQLITE_BACKUP,
                readonly_uri(database.path),
                str(self.stage / database.path.name),
                str(database.path),
            ),
            f"the online backup of {database.path}",
        )

    # -- running the programs -----------------------------------------------------------

    def _run(
        self,
        argv: tuple[str, ...],
        what: str,
        *,
        env: dict[str, str] | None = None,
        stdout: Path | None = None,
        secrets: tuple[str, ...] = (),
        login: MariaDBLogin | None = None,
    ) -> ResticResult:
        """Run one program of the dump: within what is left of the dump's timeout (one for
        the whole dump, however many databases), stopped when it stalls or on request."""
        source = self.source
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DumpFailed(self._late(what))
        invocation = runner.Invocation(
            argv=argv,
            env=env if env is not None else inherited(os.environ),
            command="dump",
            stdout_path=stdout,
            unavailable=DumpFailed,
            piped=login.option_file if login is not None else None,
            secrets=secrets + (login.secrets if login is not None else ()),
        )
        result = runner.run(
            invocation,
            timeout=left,
            stall_timeout=source.dump_stall_timeout.total_seconds(),
            cancel=self.cancel,
            kill_grace=DUMP_KILL_GRACE,
        )
        if result.stop_reason is StopReason.TIMEOUT:
            raise DumpFailed(self._late(what))
        failure = failure_of(result, what, DumpFailed)
        if failure is not None:
            raise failure
        return result

    def _late(self, what: str) -> str:
        timeout = format_seconds(self.source.dump_timeout.total_seconds())
        return f"the dump did not end within its dump_timeout of {timeout} ({what} was running)"


def load_instructions(source: Source, target: Path) -> list[str]:
    """How to load the dump files a restore wrote into target, as shell command lines (every
    value quoted); docs/databases.md has the whole recovery. Nothing for a source of files."""
    q = shlex.quote
    lines = []
    if source.postgresql is not None:
        connect = "".join(f"{q(arg)} " for arg in connection_args(source.postgresql))
        globals_file = target / "globals.sql"
        if globals_file.exists():
            lines.append(f"  roles first:  psql {connect}--file={q(str(globals_file))} postgres")
        for dump in sorted(target.glob("*.pgdump")):
            name = q(dump.stem)
            lines.append(
                f"  {dump.stem}:  createdb {connect}{name} && "
                f"pg_restore {connect}--dbname={name} --exit-on-error {q(str(dump))}"
            )
    elif source.mariadb is not None:
        server = source.mariadb
        client = program("mariadb", "mysql")
        options = (f"--defaults-extra-file={server.defaults_file}",) if server.defaults_file else ()
        connect = "".join(f"{q(arg)} " for arg in (*options, *connection_args(server)))
        for dump in sorted(target.glob("*.sql")):
            name = dump.stem
            create = q(f"CREATE DATABASE `{name}`")
            lines.append(
                f"  {name}:  {client} {connect}--execute {create} && "
                f"{client} {connect}{q(name)} < {q(str(dump))}"
            )
    elif source.sqlite is not None:
        live = source.sqlite.path
        copy = q(str(target / live.name))
        # A journal beside the old file belongs to it: SQLite would replay it into the copy.
        journals = " ".join(q(f"{live}-{end}") for end in ("wal", "shm", "journal"))
        lines.append(
            f"  stop what writes {live}, then:  rm -f {journals} && cp {copy} {q(str(live))}"
        )
    elif source.command is not None and source.stdin_filename is not None:
        lines.append(
            f"  {target / source.stdin_filename} is what `{shlex.join(source.command)}` "
            "printed: load it with that program's own restore tool"
        )
    return ["to load the dump:", *lines] if lines else []


def connection_args(server: PostgreSQL | MariaDB) -> tuple[str, ...]:
    """Where the server is and who logs in (never a password: see postgresql_env and
    MariaDBLogin)."""
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


class MariaDBLogin:
    """How a MariaDB program logs in: its arguments, which start with the option file (the
    configured one, or a private one holding the password, handed over on a pipe: never on
    disk, never in argv), then where the server is."""

    def __init__(self, server: MariaDB, failure: type[Failure]) -> None:
        self.option_file: str | None = None
        self.secrets: tuple[str, ...] = ()
        options: tuple[str, ...] = ()
        if server.password is not None:
            password = _secret(server.password, failure)
            lines = [f"!include {server.defaults_file}"] if server.defaults_file else []
            lines += ["[client]", f"password={_option_value(password)}"]
            self.option_file = "\n".join(lines) + "\n"
            self.secrets = _secrets(password)
            options = (f"--defaults-extra-file={runner.PIPED_FILE}",)
        elif server.defaults_file is not None:
            options = (f"--defaults-extra-file={server.defaults_file}",)
        self.args = (*options, *connection_args(server))
        self.explicit = bool(options)

    def env(self) -> dict[str, str]:
        """The program's environment. With credentials in the config, no ~/.my.cnf: MariaDB
        reads it after the option file, and a password there would win over the config's."""
        env = inherited(os.environ)
        if self.explicit:
            env["HOME"] = "/nonexistent"  # as Debian's users without a home have it
        return env


def _option_value(value: str) -> str:
    """A value as a MariaDB option file reads it back unchanged: quoted (# and spaces kept),
    its backslashes, quotes and line breaks escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def readonly_uri(path: Path) -> str:
    """An SQLite URI that opens path read-only, whatever characters its name holds."""
    return f"{path.absolute().as_uri()}?mode=ro"


def _secrets(*values: str | None) -> tuple[str, ...]:
    return tuple(value for value in values if value)


def _secret(reference: str, failure: type[Failure]) -> str:
    try:
        return resolve(reference, Path("/"))
    except UnresolvedReference as exc:
        raise failure(f"the password: {exc}") from None


def _safe_names(names: list[str], server: PostgreSQL | MariaDB) -> list[str]:
    """The databases a server listed, less the drills' scratch database, checked as
    configured ones are: each becomes an argument and a file name, so none may look like an
    option or a path."""
    names = [name for name in names if name != server.scratch_database]
    odd = [name for name in names if not re.fullmatch(DATABASE_PATTERN, name)]
    if odd:
        raise DumpFailed(
            f"cannot dump {plural(len(odd), 'database')} ({', '.join(map(repr, odd))}) by name "
            "safely (a name "
            "must be letters, digits and _.$-, at most 63): rename them, or dump them with a "
            "command source"
        )
    return names


def program(*names: str) -> str:
    """The first of these programs on PATH (MariaDB's names, then MySQL's)."""
    for name in names:
        if shutil.which(name) is not None:
            return name
    return names[0]  # the runner says it cannot be started
