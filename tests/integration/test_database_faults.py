"""The history database unavailable when a command starts, for real: a PostgreSQL that is
not there, a SQLite history another process holds locked, a state directory on a filesystem
remounted read-only. Each time: a clear error naming what is wrong, exit 5 (not ready), never
a traceback."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import firebreak
from tests.support.mounts import tmpfs
from tests.support.servers import free_port
from tests.support.setup import Setup

NOT_READY = 5


def _fails_clearly(setup: Setup, *command: str, saying: str) -> None:
    done = firebreak(setup.write(), *command, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == NOT_READY, said
    assert saying in said, said
    assert "Traceback" not in said, said


def _daemon_fails_clearly(setup: Setup, saying: str) -> None:
    done = firebreak(setup.write(), "run", timeout=60)
    said = done.stdout + done.stderr
    assert done.returncode == NOT_READY, said
    assert saying in said and "Traceback" not in said, said


def test_a_postgresql_that_is_not_there(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    url = f"postgresql+psycopg://firebreak@127.0.0.1:{free_port()}/history"
    setup.top["database"] = {"url": url}
    for command in (("status",), ("backup", "www")):
        _fails_clearly(setup, *command, saying="Connection refused")
    _daemon_fails_clearly(setup, "cannot open the database")


def test_a_sqlite_history_another_process_holds_locked(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    assert firebreak(setup.write(), "db", "upgrade").returncode == 0
    holder = sqlite3.connect(Path(setup.top["state_dir"]) / "firebreak.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        _fails_clearly(setup, "backup", "www", saying="database is locked")
    finally:
        holder.close()
    assert firebreak(setup.write(), "backup", "www").returncode == 0, "once let go, it works"


@pytest.mark.root
def test_a_state_directory_remounted_read_only(setup: Setup, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "state", size="16m") as state:
        setup.local_site("a")
        setup.source("www", ["a"])
        setup.top["state_dir"] = str(state)
        assert firebreak(setup.write(), "db", "upgrade").returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        _fails_clearly(setup, "backup", "www", saying="Read-only file system")
        _daemon_fails_clearly(setup, "Read-only file system")
