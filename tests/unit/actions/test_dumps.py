"""What a restore prints for loading a dump, and SQLite file names that are not plain."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

from firebreak.actions.dumps import load_instructions, readonly_uri
from firebreak.config.model import Source


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
    assert shlex.split(command.split(" && ")[0]) == ["rm", "-f", f"{live}-wal", f"{live}-shm"]


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
