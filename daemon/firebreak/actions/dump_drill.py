"""A restore drill of a dump: the restored files are read through by their own tools, and,
where the config names a scratch database, loaded into it and their rows counted.

Failures are told apart as for every drill: a dump that its own tool cannot read to the end
found the site's data bad (``DrillFailed``). Everything after that is the drill's own trouble
and says nothing about the site (``DrillScratchFailed``): a scratch database that cannot be
reached, re-created or loaded (a missing role or extension, a full disk), and a tool that was
stopped at a limit. Drills of every source that names the same scratch database take turns.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from firebreak.actions.dumps import (
    MariaDBLogin,
    connection_args,
    postgresql_env,
    program,
    readonly_uri,
)
from firebreak.actions.flocks import site_lock
from firebreak.actions.programs import failure_of
from firebreak.config.dumps import MariaDB, PostgreSQL
from firebreak.config.model import Source
from firebreak.humanize import plural
from firebreak.outcomes import DrillFailed, DrillScratchFailed, Failure, Interrupted
from firebreak.restic import runner
from firebreak.restic.result import ResticResult, StopReason

DRILL_TIMEOUT = 6 * 3600.0
DRILL_KILL_GRACE = 10.0
# Exact row counts of every user table, in one query each.
POSTGRESQL_ROWS = (
    "SELECT count(*), coalesce(sum((xpath('/row/c/text()', query_to_xml(format("
    "'SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]"
    "::text::bigint), 0) FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
    "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
)
MARIADB_TABLES = (
    "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
)


def prove_dump(source: Source, restored: Path, cancel: threading.Event | None) -> str:
    """What the drill proved of the dump files restored into ``restored``, in words; raises
    DrillFailed, DrillScratchFailed or Interrupted when it could not. The caller holds
    scratch_lock."""
    proof = _Proof(restored, cancel)
    if source.postgresql is not None:
        return proof.postgresql(source.postgresql)
    if source.mariadb is not None:
        return proof.mariadb(source.mariadb)
    if source.sqlite is not None:
        return proof.sqlite(restored / source.sqlite.path.name)
    return "restored and verified by restic"


@contextmanager
def scratch_lock(locks_dir: Path, source: Source, cancel: threading.Event | None) -> Iterator[None]:
    """The source's scratch database to one drill alone (nothing for a source without one).
    Drills of several sources, or of one source at several sites, may name the same one: a
    drill takes this before its site's lock and a run slot, so one waiting for the scratch
    database holds neither. Keyed by the kind and the name alone (a server may be spelled in
    several ways), so drills of two servers' same-named scratch databases take turns too.
    Raises LockWaitCancelled when stopped while waiting."""
    server = source.postgresql or source.mariadb
    if server is None or server.scratch_database is None:
        yield
        return
    where = f"{type(server).__name__}\0{server.scratch_database}"
    name = hashlib.sha256(where.encode()).hexdigest()[:16]
    purpose = f"drill loading into {server.scratch_database}"
    with site_lock(locks_dir / "scratch", name, purpose, cancel):
        yield


class _Proof:
    def __init__(self, restored: Path, cancel: threading.Event | None) -> None:
        self.restored = restored
        self.cancel = cancel

    def postgresql(self, server: PostgreSQL) -> str:
        env = postgresql_env(server, DrillScratchFailed)
        secrets = tuple(value for value in (env.get("PGPASSWORD"),) if value)
        connect = connection_args(server)
        said = []
        for dump in sorted(self.restored.glob("*.pgdump")):
            # Reading it whole, not only its table of contents: a truncated dump fails here.
            read = ("pg_restore", "--file=/dev/null", str(dump))
            self._run(read, env, DrillFailed, what=f"pg_restore of {dump.name}")
            said.append(f"{dump.name} readable to the end")
            scratch = server.scratch_database
            if scratch is None:
                continue
            psql = ("psql", *connect, "--no-password", "--no-psqlrc", "-v", "ON_ERROR_STOP=1")
            for statement in (
                f'DROP DATABASE IF EXISTS "{scratch}"',
                f'CREATE DATABASE "{scratch}"',
            ):
                self._run((*psql, "--command", statement, "postgres"), env, secrets=secrets)
            try:
                load = (
                    "pg_restore",
                    *connect,
                    "--no-password",
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    f"--dbname={scratch}",
                    str(dump),
                )
                self._run(load, env, what=f"loading {dump.name}", secrets=secrets)
                count = (
                    *psql,
                    "--no-align",
                    "--tuples-only",
                    "--field-separator= ",
                    "--command",
                    POSTGRESQL_ROWS,
                    scratch,
                )
                counted = self._run(count, env, secrets=secrets)
            finally:
                drop = (*psql, "--command", f'DROP DATABASE IF EXISTS "{scratch}"', "postgres")
                self._run(drop, env, check=False, secrets=secrets)
            said[-1] += f", loaded into {scratch}: {_tables_and_rows(counted)}"
        if not said:
            raise DrillFailed("the snapshot holds no .pgdump file")
        return "; ".join(said)

    def mariadb(self, server: MariaDB) -> str:
        client = program("mariadb", "mysql")
        said = []
        for dump in sorted(self.restored.glob("*.sql")):
            with dump.open("rb") as handle:
                handle.seek(max(dump.stat().st_size - 512, 0))
                if b"-- Dump completed" not in handle.read():
                    raise DrillFailed(f"{dump.name} does not end as a complete dump does")
            said.append(f"{dump.name} complete")
            scratch = server.scratch_database
            if scratch is None:
                continue
            login = MariaDBLogin(server, DrillScratchFailed)
            env = login.env()
            base = (client, *login.args, "--batch", "--skip-column-names")
            renew = f"DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`"
            self._run((*base, "--execute", renew), env, login=login)
            try:
                self._run(
                    (*base, scratch), env, stdin=dump, login=login, what=f"loading {dump.name}"
                )
                listed = self._run((*base, "--execute", MARIADB_TABLES, scratch), env, login=login)
                tables = [line.strip() for line in listed.stdout_lines if line.strip()]
                query = _mariadb_row_count(tables)
                counted = self._run((*base, "--execute", query, scratch), env, login=login)
            finally:
                drop = f"DROP DATABASE IF EXISTS `{scratch}`"
                self._run((*base, "--execute", drop), env, check=False, login=login)
            rows = " ".join(counted.stdout_lines).strip() or "?"
            counts = f"{plural(len(tables), 'table')}, {rows} {_noun(rows, 'row')}"
            said[-1] += f", loaded into {scratch}: {counts}"
        if not said:
            raise DrillFailed("the snapshot holds no .sql file")
        return "; ".join(said)

    def sqlite(self, database: Path) -> str:
        try:
            with sqlite3.connect(readonly_uri(database), uri=True) as connection:
                [verdict] = connection.execute("PRAGMA integrity_check").fetchone()
                if verdict != "ok":
                    raise DrillFailed(f"{database.name}: PRAGMA integrity_check says {verdict}")
                tables = [
                    name
                    for (name,) in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                rows = sum(
                    connection.execute(f"SELECT count(*) FROM {_sqlite_name(name)}").fetchone()[0]  # noqa: S608
                    for name in tables
                )
        except sqlite3.Error as exc:
            raise DrillFailed(f"{database.name} cannot be read as a database: {exc}") from None
        return f"{database.name} intact: {plural(len(tables), 'table')}, {plural(rows, 'row')}"

    def _run(
        self,
        argv: tuple[str, ...],
        env: dict[str, str],
        failure: type[Failure] = DrillScratchFailed,
        *,
        what: str | None = None,
        stdin: Path | None = None,
        check: bool = True,
        secrets: tuple[str, ...] = (),
        login: MariaDBLogin | None = None,
    ) -> ResticResult:
        """Run one tool of the proof. Its failure is ``failure`` when it exits non-zero; a
        limit reached is the drill's own trouble whatever the tool (DrillScratchFailed)."""
        invocation = runner.Invocation(
            argv=argv,
            env=env,
            command="drill",
            stdin_path=stdin,
            unavailable=DrillScratchFailed,
            piped=login.option_file if login is not None else None,
            secrets=secrets + (login.secrets if login is not None else ()),
        )
        result = runner.run(
            invocation, timeout=DRILL_TIMEOUT, cancel=self.cancel, kill_grace=DRILL_KILL_GRACE
        )
        if result.stop_reason is StopReason.CANCELLED:
            raise Interrupted("the drill was stopped on request")
        if check:
            kind = failure if result.stop_reason is StopReason.NONE else DrillScratchFailed
            trouble = failure_of(result, what or argv[0], kind)
            if trouble is not None:
                raise trouble
        return result


def _tables_and_rows(counted: ResticResult) -> str:
    words = [*" ".join(counted.stdout_lines).split(), "?", "?"]
    tables, rows = words[0], words[1]
    return f"{tables} {_noun(tables, 'table')}, {rows} {_noun(rows, 'row')}"


def _mariadb_row_count(tables: list[str]) -> str:
    """One query counting every row of these tables (names quoted as MariaDB quotes them:
    they come from the scratch database's own catalog)."""
    if not tables:
        return "SELECT 0"
    counts = " UNION ALL ".join(
        "SELECT COUNT(*) AS c FROM `" + name.replace("`", "``") + "`"  # noqa: S608 (quoted)
        for name in tables
    )
    return "SELECT SUM(c) FROM (" + counts + ") AS t"  # noqa: S608 (identifiers quoted above)


def _sqlite_name(name: str) -> str:
    """A table's name as an SQLite identifier, whatever it holds."""
    return '"' + name.replace('"', '""') + '"'


def _noun(count: str, word: str) -> str:
    """A noun after a count a database printed (``?`` when it printed none)."""
    return word if count == "1" else word + "s"
