"""A restore drill of a dump: the restored files are read by their own tools, and, where the
config names a scratch database, loaded into it and their rows counted.

Failures are told apart as for every drill: a dump that its own tool cannot read, or that
fails to load, found the site's data bad (``DrillFailed``); a scratch database that cannot be
reached or re-created is the drill's own trouble and says nothing about the site
(``DrillScratchFailed``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from firebreak.actions.dumps import connection_args, mariadb_options, postgresql_env, program
from firebreak.config.dumps import MariaDB, PostgreSQL
from firebreak.config.model import Source
from firebreak.outcomes import DrillFailed, DrillScratchFailed, Failure, Interrupted
from firebreak.restic import runner
from firebreak.restic.commands import inherited
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
    DrillFailed, DrillScratchFailed or Interrupted when it could not."""
    proof = _Proof(restored, cancel)
    if source.postgresql is not None:
        return proof.postgresql(source.postgresql)
    if source.mariadb is not None:
        return proof.mariadb(source.mariadb)
    if source.sqlite is not None:
        return proof.sqlite(restored / source.sqlite.path.name)
    return "restored and verified by restic"


class _Proof:
    def __init__(self, restored: Path, cancel: threading.Event | None) -> None:
        self.restored = restored
        self.cancel = cancel

    def postgresql(self, server: PostgreSQL) -> str:
        env = postgresql_env(server, DrillScratchFailed)
        connect = connection_args(server)
        said = []
        for dump in sorted(self.restored.glob("*.pgdump")):
            listed = self._run(("pg_restore", "--list", str(dump)), env, DrillFailed)
            if not listed.stdout_lines:
                raise DrillFailed(f"{dump.name}: pg_restore lists nothing in it")
            said.append(f"{dump.name} readable")
            scratch = server.scratch_database
            if scratch is None:
                continue
            psql = ("psql", *connect, "--no-password", "--no-psqlrc", "-v", "ON_ERROR_STOP=1")
            for statement in (
                f'DROP DATABASE IF EXISTS "{scratch}"',
                f'CREATE DATABASE "{scratch}"',
            ):
                self._run((*psql, "--command", statement, "postgres"), env, DrillScratchFailed)
            try:
                self._run(
                    (
                        "pg_restore",
                        *connect,
                        "--no-password",
                        "--no-owner",
                        "--no-privileges",
                        "--exit-on-error",
                        f"--dbname={scratch}",
                        str(dump),
                    ),
                    env,
                    DrillFailed,
                )
                counted = self._run(
                    (
                        *psql,
                        "--no-align",
                        "--tuples-only",
                        "--field-separator= ",
                        "--command",
                        POSTGRESQL_ROWS,
                        scratch,
                    ),
                    env,
                    DrillScratchFailed,
                )
            finally:
                drop = (*psql, "--command", f'DROP DATABASE IF EXISTS "{scratch}"', "postgres")
                self._run(drop, env, DrillScratchFailed, check=False)
            said[-1] += f", loaded into {scratch}: {_tables_and_rows(counted)}"
        if not said:
            raise DrillFailed("the snapshot holds no .pgdump file")
        return "; ".join(said)

    def mariadb(self, server: MariaDB) -> str:
        client = program("mariadb", "mysql")
        env = inherited(os.environ)
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
            with mariadb_options(server, self.restored, DrillScratchFailed) as connect:
                base = (client, *connect, "--batch", "--skip-column-names")
                renew = f"DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`"
                self._run((*base, "--execute", renew), env, DrillScratchFailed)
                try:
                    self._run((*base, scratch), env, DrillFailed, stdin=dump)
                    listed = self._run(
                        (*base, "--execute", MARIADB_TABLES, scratch), env, DrillScratchFailed
                    )
                    tables = [line.strip() for line in listed.stdout_lines if line.strip()]
                    query = _mariadb_row_count(tables)
                    counted = self._run(
                        (*base, "--execute", query, scratch), env, DrillScratchFailed
                    )
                finally:
                    drop = f"DROP DATABASE IF EXISTS `{scratch}`"
                    self._run((*base, "--execute", drop), env, DrillScratchFailed, check=False)
            rows = " ".join(counted.stdout_lines).strip() or "?"
            said[-1] += f", loaded into {scratch}: {len(tables)} tables, {rows} rows"
        if not said:
            raise DrillFailed("the snapshot holds no .sql file")
        return "; ".join(said)

    def sqlite(self, database: Path) -> str:
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
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
                    connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # noqa: S608
                    for name in tables
                )
        except sqlite3.Error as exc:
            raise DrillFailed(f"{database.name} cannot be read as a database: {exc}") from None
        return f"{database.name} intact: {len(tables)} tables, {rows} rows"

    def _run(
        self,
        argv: tuple[str, ...],
        env: dict[str, str],
        failure: type[Failure],
        *,
        stdin: Path | None = None,
        check: bool = True,
    ) -> ResticResult:
        invocation = runner.Invocation(
            argv=argv, env=env, command="drill", stdin_path=stdin, unavailable=DrillScratchFailed
        )
        result = runner.run(
            invocation, timeout=DRILL_TIMEOUT, cancel=self.cancel, kill_grace=DRILL_KILL_GRACE
        )
        if result.stop_reason is StopReason.CANCELLED:
            raise Interrupted("the drill was stopped on request")
        if check and (result.exit_code != 0 or result.stop_reason is not StopReason.NONE):
            said = next((line for line in reversed(result.stderr_tail) if line.strip()), "")
            raise failure(f"{argv[0]} exited {result.exit_code}" + (f": {said}" if said else ""))
        return result


def _tables_and_rows(counted: ResticResult) -> str:
    words = [*" ".join(counted.stdout_lines).split(), "?", "?"]
    return f"{words[0]} tables, {words[1]} rows"


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
