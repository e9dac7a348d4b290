"""What a restore prints for loading a dump, and SQLite file names that are not plain."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from firebreak.actions.dumps import SQLITE_BACKUP, Dumper, load_instructions, readonly_uri
from firebreak.config.model import Source
from firebreak.outcomes import DumpFailed


def _source(**kind: object) -> Source:
    return Source.model_validate({"paths": [], "sites": ["a"], **kind})


def test_the_load_commands_are_shell_lines_whatever_the_names_hold(tmp_path: Path) -> None:
    target = tmp_path / "re stored"
    target.mkdir()
    (target / "pay$roll.pgdump").write_bytes(b"")
    (target / "globals.sql").write_text("")
    source = _source(postgresql={"databases": ["pay$roll"], "host": "/run/post gresql"})
    lines = load_instructions(source, target)
    assert lines[0] == "to load the dump:"
    roles, load = lines[1], lines[2]
    assert roles.startswith("  roles first:  ")
    words = shlex.split(load.split(":  ", 1)[1])
    assert words[:3] == ["createdb", "--host=/run/post gresql", "pay$roll"]
    assert words[-1] == str(target / "pay$roll.pgdump")
    assert "--dbname=pay$roll" in words


def test_mariadb_load_commands_log_in_as_the_dump_did(tmp_path: Path) -> None:
    (tmp_path / "shop.sql").write_text("")
    options = tmp_path / "my.cnf"
    options.write_text("[client]\n")
    source = _source(
        mariadb={"databases": ["shop"], "host": "db1", "port": 3307, "defaults_file": str(options)}
    )
    [_, line] = load_instructions(source, tmp_path)
    create, load = line.split(":  ", 1)[1].split(" && ")
    assert shlex.split(create)[1:] == [
        f"--defaults-extra-file={options}",
        "--host=db1",
        "--port=3307",
        "--execute",
        "CREATE DATABASE `shop`",
    ]
    assert shlex.split(load.split(" < ")[0])[-1] == "shop"


def test_an_sqlite_copy_replaces_the_database_and_its_journal_files(tmp_path: Path) -> None:
    live = tmp_path / "notes.db"
    [_, line] = load_instructions(_source(sqlite={"path": str(live)}), tmp_path / "r")
    command = line.split("then:  ", 1)[1]
    assert shlex.split(command.split(" && ")[0]) == [
        "rm",
        "-f",
        f"{live}-wal",
        f"{live}-shm",
        f"{live}-journal",
    ]


def test_an_sqlite_file_is_opened_read_only_whatever_its_name(tmp_path: Path) -> None:
    odd = tmp_path / "a#b?c%d e.db"
    with sqlite3.connect(odd) as connection:
        connection.execute("CREATE TABLE t (x)")
    connection.close()
    with sqlite3.connect(readonly_uri(odd), uri=True) as reader:
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)
        try:
            reader.execute("INSERT INTO t VALUES (1)")
        except sqlite3.OperationalError as exc:
            assert "readonly" in str(exc)
        else:
            raise AssertionError("the read-only connection could write")
    reader.close()
    assert not (tmp_path / "a").exists(), "the name was cut at its #"


def _copy_as_nobody(database: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """The SQLite dump as the service user runs it: not root, the database's directory not
    writable (only CAP_DAC_READ_SEARCH lets the service read it)."""
    command = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--",
        sys.executable,
        "-I",
        "-c",
        SQLITE_BACKUP,
        readonly_uri(database),
        str(target),
        str(database),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
def test_a_wal_database_in_a_directory_the_service_cannot_write_is_still_copied() -> None:
    app = Path(tempfile.mkdtemp(prefix="fb-sqlite-app-"))
    out = Path(tempfile.mkdtemp(prefix="fb-sqlite-out-"))
    try:
        app.chmod(0o755)  # root's: the service may read, never write
        out.chmod(0o777)
        database = app / "app.db"
        with sqlite3.connect(database) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE t (x)")
            connection.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(500)])
        connection.close()  # the application stopped: its -wal and -shm are gone
        database.chmod(0o644)
        assert not (app / "app.db-shm").exists()
        done = _copy_as_nobody(database, out / "copy.db")
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(out / "copy.db") as copy:
            assert copy.execute("SELECT count(*) FROM t").fetchone() == (500,)
        copy.close()
        assert sorted(p.name for p in app.iterdir()) == ["app.db"], "it wrote beside the database"

        # A -wal left behind (a crash) holds committed rows the file alone lacks: refused, with
        # what to do, never a copy without them.
        writer = sqlite3.connect(database)
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("INSERT INTO t VALUES (-1)")
        writer.commit()
        wal = (app / "app.db-wal").read_bytes()
        writer.close()
        (app / "app.db-wal").write_bytes(wal)
        (app / "app.db-shm").unlink(missing_ok=True)
        (out / "copy.db").unlink()
        refused = _copy_as_nobody(database, out / "copy.db")
        assert refused.returncode == 1
        assert "cannot create its -shm file: give it write access" in refused.stderr
    finally:
        shutil.rmtree(app)
        shutil.rmtree(out)


def test_one_dump_timeout_covers_every_program_of_the_dump(tmp_path: Path) -> None:
    # Two databases, each dumped well within the timeout, together past it: the second is
    # stopped where the deadline falls, not given a timeout of its own.
    source = _source(command=["true"], stdin_filename="x", dump_timeout="3s")
    dumper = Dumper(source, tmp_path, None)
    dumper._run(("sleep", "2"), "the first")
    with pytest.raises(DumpFailed) as late:
        dumper._run(("sleep", "2"), "the second")
    assert late.value.message == (
        "the dump did not end within its dump_timeout of 3s (the second was running)"
    )
