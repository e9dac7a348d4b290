"""Database sources and hooks, against real servers: one dump per cycle, stored at every
site, restored from a surviving one, loaded again, and proven by drills."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firebreak.actions.dump_drill import scratch_lock
from firebreak.outcomes import Status
from tests.support.cli import firebreak
from tests.support.mounts import tmpfs
from tests.support.servers import PostgresCluster, RestServer
from tests.support.setup import PASSWORD, Setup


def _snapshot_files(repository: Path) -> list[str]:
    """The files in the newest snapshot of a local repository, with the real restic."""
    password = repository.parent / f"pw-{uuid.uuid4().hex[:6]}"
    password.write_text(PASSWORD + "\n")
    try:
        listed = subprocess.run(
            ["restic", "--no-cache", "ls", "--json", "latest"],
            env={
                "PATH": os.environ["PATH"],
                "RESTIC_REPOSITORY": str(repository),
                "RESTIC_PASSWORD_FILE": str(password),
            },
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        password.unlink()
    entries = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    return sorted(e["path"] for e in entries if e.get("type") == "file")


def _psql(cluster: PostgresCluster, database: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", cluster.dsn(database), "--no-align", "--tuples-only", "--command", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _three_sites(setup: Setup) -> list[str]:
    for name in ("a", "b", "c"):
        setup.local_site(name)
    return ["a", "b", "c"]


@pytest.fixture
def app_database(postgres_cluster: PostgresCluster) -> Iterator[str]:
    name = f"fb_app_{uuid.uuid4().hex[:8]}"
    postgres_cluster.create_database(name)
    _psql(postgres_cluster, name, "CREATE TABLE items (id serial PRIMARY KEY, body text)")
    _psql(
        postgres_cluster,
        name,
        "INSERT INTO items (body) SELECT md5(g::text) FROM generate_series(1, 5000) g",
    )
    _psql(
        postgres_cluster, name, "CREATE TABLE notes AS SELECT g AS n FROM generate_series(1, 100) g"
    )
    yield name
    for database in (name, f"{name}_restored"):
        _psql(postgres_cluster, "postgres", f"DROP DATABASE IF EXISTS {database}")


def test_a_postgresql_database_is_dumped_once_kept_everywhere_and_restored_from_a_survivor(
    setup: Setup, postgres_cluster: PostgresCluster, app_database: str
) -> None:
    scratch = f"{app_database}_drill"
    setup.source(
        "app-db",
        _three_sites(setup),
        paths=[],
        postgresql={
            "databases": [app_database],
            "host": "127.0.0.1",
            "port": postgres_cluster.port,
            "user": "postgres",
            "scratch_database": scratch,
        },
    )
    config = setup.write()
    done = firebreak(config, "backup", "app-db")
    assert done.returncode == 0, done.stdout + done.stderr
    for site in ("a", "b", "c"):
        assert _snapshot_files(setup.dir / f"repo-{site}") == [f"/{app_database}.pgdump"]
    assert not (setup.dir / "state" / "dumps" / "app-db").exists(), "the stage was left behind"
    checksum = "SELECT md5(string_agg(body, ',' ORDER BY id)) FROM items"
    before = _psql(postgres_cluster, app_database, checksum)

    drill = firebreak(config, "drill", "app-db")
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert (
        f"{app_database}.pgdump readable to the end, loaded into {scratch}: 2 tables, 5100 rows"
        in (drill.stdout)
    )
    assert (
        _psql(
            postgres_cluster,
            "postgres",
            f"SELECT count(*) FROM pg_database WHERE datname = '{scratch}'",
        )
        == "0"
    )

    fire = firebreak(config, "drill", "--fire", "a")
    assert fire.returncode == 0, fire.stdout + fire.stderr
    assert "app-db: survives the loss of a" in fire.stdout
    assert f"{app_database}.pgdump readable to the end, loaded into {scratch}" in fire.stdout

    # The fire: the database is gone, and so is site a.
    _psql(postgres_cluster, "postgres", f"DROP DATABASE {app_database}")
    shutil.rmtree(setup.dir / "repo-a")
    target = setup.dir / "restored"
    restored = firebreak(config, "restore", "app-db", "--target", str(target))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "to load the dump:" in restored.stdout
    assert f"pg_restore --host=127.0.0.1 --port={postgres_cluster.port}" in restored.stdout
    # Load it as the printed command says, under another name.
    new = f"{app_database}_restored"
    _psql(postgres_cluster, "postgres", f"CREATE DATABASE {new}")
    subprocess.run(
        [
            "pg_restore",
            f"--dbname={postgres_cluster.dsn(new)}",
            "--exit-on-error",
            str(target / f"{app_database}.pgdump"),
        ],
        check=True,
    )
    assert _psql(postgres_cluster, new, "SELECT count(*) FROM items") == "5000"
    assert _psql(postgres_cluster, new, checksum) == before


def test_a_dump_that_fails_fails_the_cycle_at_every_site_and_stores_nothing(
    setup: Setup, postgres_cluster: PostgresCluster
) -> None:
    from tests.support.servers import free_port

    sites = _three_sites(setup)
    setup.source(
        "no-such-db",
        sites,
        paths=[],
        postgresql={
            "databases": ["fb_missing_4471"],
            "host": "127.0.0.1",
            "port": postgres_cluster.port,
            "user": "postgres",
        },
    )
    setup.source(
        "server-down",
        sites,
        paths=[],
        postgresql={"databases": ["app"], "host": "127.0.0.1", "port": free_port()},
    )
    # A program that writes half its output and then dies.
    script = setup.dir / "half"
    script.write_text("#!/bin/sh\nhead -c 100000 /dev/urandom\necho broken pipe >&2\nexit 3\n")
    script.chmod(0o755)
    setup.source("half", sites, paths=[], command=[str(script)], stdin_filename="half.bin")
    config = setup.write()
    for source in ("no-such-db", "server-down", "half"):
        done = firebreak(config, "backup", source)
        assert done.returncode == 4, done.stdout + done.stderr
    runs = {(r.source, r.site): r for r in setup.runs()}
    for source, says in (
        ("no-such-db", "pg_dump of fb_missing_4471 exited 1"),
        ("server-down", "pg_dump of app exited 1"),
        ("half", "the command half exited 3: broken pipe"),
    ):
        for site in sites:
            run = runs[(source, site)]
            assert (run.status, run.error_class) == (Status.FAILED, "DumpFailed")
            assert says in (run.error_message or ""), run.error_message
    # Nothing was stored anywhere: no repository was even created.
    assert not any((setup.dir / f"repo-{site}").exists() for site in sites)
    assert not list((setup.dir / "state" / "dumps").iterdir())


def _mariadb(*args: str, stdin: Path | None = None) -> str:
    with stdin.open("rb") if stdin else open(os.devnull, "rb") as given:
        done = subprocess.run(
            [
                "mariadb",
                "--host=127.0.0.1",
                "--port=3306",
                "--user=root",
                "--batch",
                "--skip-column-names",
                *args,
            ],
            stdin=given,
            capture_output=True,
            check=True,
        )
    return done.stdout.decode().strip()


@pytest.fixture
def shop_database() -> Iterator[str]:
    try:
        _mariadb("--execute", "SELECT 1")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no MariaDB server at 127.0.0.1:3306 with root and no password: {exc}")
    name = f"fb_shop_{uuid.uuid4().hex[:8]}"
    _mariadb("--execute", f"CREATE DATABASE {name}")
    _mariadb(
        name,
        "--execute",
        "CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, "
        "total DECIMAL(10,2)) ENGINE=InnoDB",
    )
    _mariadb(name, "--execute", "INSERT INTO orders (total) SELECT seq / 7 FROM seq_1_to_3000")
    yield name
    for database in (name, f"{name}_drill", f"{name}_back"):
        _mariadb("--execute", f"DROP DATABASE IF EXISTS {database}")


def test_a_mariadb_database_is_dumped_consistently_restored_and_loaded(
    setup: Setup, shop_database: str
) -> None:
    defaults = setup.dir / "mariadb.cnf"
    defaults.write_text("[client]\nuser=root\n")
    defaults.chmod(0o600)
    setup.source(
        "shop",
        _three_sites(setup),
        paths=[],
        mariadb={
            "databases": [shop_database],
            "host": "127.0.0.1",
            "port": 3306,
            "defaults_file": str(defaults),
            "scratch_database": f"{shop_database}_drill",
        },
    )
    config = setup.write()
    done = firebreak(config, "backup", "shop")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _snapshot_files(setup.dir / "repo-b") == [f"/{shop_database}.sql"]
    drill = firebreak(config, "drill", "shop", "--site", "c")
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert (
        f"{shop_database}.sql complete, loaded into {shop_database}_drill: 1 table, 3000 rows"
        in drill.stdout
    )

    before = _mariadb(shop_database, "--execute", "SELECT COUNT(*), SUM(total) FROM orders")
    _mariadb("--execute", f"DROP DATABASE {shop_database}")
    target = setup.dir / "restored"
    restored = firebreak(config, "restore", "shop", "--target", str(target), "--site", "b")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"CREATE DATABASE `{shop_database}`" in restored.stdout
    back = f"{shop_database}_back"
    _mariadb("--execute", f"CREATE DATABASE {back}")
    _mariadb(back, stdin=target / f"{shop_database}.sql")
    assert _mariadb(back, "--execute", "SELECT COUNT(*), SUM(total) FROM orders") == before


def test_an_sqlite_database_being_written_is_copied_whole(setup: Setup) -> None:
    database = setup.dir / "notes.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany("INSERT INTO notes (body) VALUES (?)", [("x" * 200,)] * 20000)
    setup.source("notes", _three_sites(setup), paths=[], sqlite={"path": str(database)})
    config = setup.write()
    stop = threading.Event()

    def keep_writing() -> None:
        with sqlite3.connect(database, timeout=30) as writer:
            while not stop.is_set():
                writer.execute("INSERT INTO notes (body) VALUES ('during the backup')")
                writer.commit()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        done = firebreak(config, "backup", "notes")
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 0, done.stdout + done.stderr
    target = setup.dir / "restored"
    assert firebreak(config, "restore", "notes", "--target", str(target)).returncode == 0
    with sqlite3.connect(target / "notes.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM notes").fetchone()[0] >= 20000
    drill = firebreak(config, "drill", "notes", "--site", "a")
    assert drill.returncode == 0 and "notes.db intact: 1 table, " in drill.stdout


def test_a_command_runs_once_per_cycle_and_a_dead_site_does_not_stop_the_others(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    counter = setup.dir / "runs.log"
    script = setup.dir / "export"
    script.write_text(f"#!/bin/sh\necho run >> {counter}\nprintf 'dn: dc=example\\n'\n")
    script.chmod(0o755)
    down = rest_server_factory()
    setup.local_site("a")
    setup.local_site("b")
    setup.rest_site("down", down)
    setup.source(
        "ldap", ["a", "b", "down"], paths=[], command=[str(script)], stdin_filename="ldap.ldif"
    )
    down.stop()
    config = setup.write()
    done = firebreak(config, "backup", "ldap")
    assert done.returncode == 4
    assert counter.read_text() == "run\n", "the dump ran more than once for one cycle"
    statuses = {r.site: r.status for r in setup.runs() if r.operation == "backup"}
    assert statuses == {"a": Status.SUCCESS, "b": Status.SUCCESS, "down": Status.FAILED}
    assert _snapshot_files(setup.dir / "repo-a") == ["/ldap.ldif"]
    target = setup.dir / "restored"
    assert firebreak(config, "restore", "ldap", "--target", str(target)).returncode == 0
    assert (target / "ldap.ldif").read_text() == "dn: dc=example\n"


def test_hooks_run_in_order_know_the_cycle_and_a_hanging_one_is_stopped(setup: Setup) -> None:
    journal = setup.dir / "journal"
    record = setup.dir / "record"
    record.write_text(
        "#!/bin/sh\n"
        f'echo "$1 $FIREBREAK_PHASE $FIREBREAK_SOURCE $FIREBREAK_SITES '
        f'$FIREBREAK_OUTCOME [$FIREBREAK_FAILED_SITES]" >> {journal}\n'
    )
    record.chmod(0o755)
    dump = setup.dir / "dump"
    dump.write_text(f"#!/bin/sh\necho dump >> {journal}\necho data\n")
    dump.chmod(0o755)
    setup.local_site("a")
    setup.local_site("b")
    setup.top["hooks"] = {"on_failure": [[str(record), "global-failure"]]}
    setup.source(
        "www",
        ["a", "b"],
        paths=[],
        command=[str(dump)],
        stdin_filename="data.txt",
        hooks={
            "before": [[str(record), "first"], {"shell": f"{record} second"}],
            "after": [[str(record), "after"], ["false"], [str(record), "after-2"]],
        },
    )
    config = setup.write()
    done = firebreak(config, "backup", "www")
    assert done.returncode == 0, done.stdout + done.stderr
    assert journal.read_text().splitlines() == [
        "first before www a,b  []",
        "second before www a,b  []",
        "dump",
        "after after www a,b success []",  # a failing after hook does not stop the next
        "after-2 after www a,b success []",
    ]

    # A before hook that hangs: stopped at its timeout, the cycle fails everywhere, no backup.
    journal.unlink()
    setup.sources["www"]["hooks"]["before"] = [{"argv": ["sleep", "600"], "timeout": "2s"}]
    started = time.monotonic()
    done = firebreak(setup.write(), "backup", "www")
    assert done.returncode == 4
    assert time.monotonic() - started < 30
    failed = [r for r in setup.runs() if r.status == Status.FAILED]
    assert {r.site for r in failed} == {"a", "b"}
    assert {r.error_class for r in failed} == {"HookFailed"}
    assert "before hook 1 (sleep) did not end within 2s" in (failed[0].error_message or "")
    assert journal.read_text().splitlines() == [
        "after after www a,b failed [a, b]".replace("a, b", "a,b"),
        "after-2 after www a,b failed [a,b]",
        "global-failure on_failure www a,b failed [a,b]",
    ]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a small tmpfs for the stage needs root")
def test_a_dump_the_disk_cannot_hold_is_refused_or_fails_and_leaves_nothing(
    setup: Setup, tmp_path: Path
) -> None:
    size = setup.dir / "size"
    size.write_text("10")
    script = setup.dir / "blob"
    script.write_text(f'#!/bin/sh\nhead -c "$(cat {size})M" /dev/urandom\n')
    script.chmod(0o755)
    with tmpfs(tmp_path / "small", size="48m") as small:
        setup.top["state_dir"] = str(small)
        setup.top["database"] = {"url": f"sqlite:///{setup.dir / 'history.db'}"}
        setup.top["restic"] = {"cache_dir": str(setup.dir / "cache")}
        setup.local_site("a")
        setup.source("blob", ["a"], paths=[], command=[str(script)], stdin_filename="blob")
        config = setup.write()
        assert firebreak(config, "backup", "blob").returncode == 0
        # The last dump was 10 MiB: with 30 MiB of the 48 taken, it (and a margin) would not fit.
        filler = small / "filler"
        filler.write_bytes(b"\0" * 30 * 1024 * 1024)
        refused = firebreak(config, "backup", "blob")
        assert refused.returncode == 4
        assert "DumpFailed: not enough space for the dump" in refused.stdout
        filler.unlink()
        # A dump bigger than the disk fails as it writes, and its stage is removed.
        size.write_text("60")
        failed = firebreak(config, "backup", "blob")
        assert failed.returncode == 4
        assert "DumpFailed: the command blob exited 1" in failed.stdout
        assert not (small / "dumps" / "blob").exists()
        assert shutil.disk_usage(small).used < 2 * 1024 * 1024


class _Watcher:
    """Every command line of every process, and every small file under a folder, read again
    and again while a test runs: where a secret must never be."""

    def __init__(self, secret: str, folder: Path) -> None:
        self.secret = secret.encode()
        self.folder = folder
        self.seen: list[str] = []
        self.piped = 0  # MariaDB programs seen reading their option file from a pipe
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch)

    def __enter__(self) -> _Watcher:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stop.is_set():
            for proc in Path("/proc").iterdir():
                try:
                    cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
                except OSError:
                    continue
                if b"--defaults-extra-file=/dev/fd/" in cmdline:
                    self.piped += 1
                if self.secret in cmdline:
                    self.seen.append(f"argv of {cmdline!r}")
            for directory, _dirs, files in os.walk(self.folder):  # a folder may go meanwhile
                for name in files:
                    path = Path(directory) / name
                    try:
                        small = path.stat().st_size < 65536
                        if small and self.secret in path.read_bytes():
                            self.seen.append(f"file {path}")
                    except OSError:
                        continue
            time.sleep(0.005)


def _mariadb_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def test_passwords_reach_the_servers_but_never_argv_a_file_or_the_output(
    setup: Setup, postgres_cluster: PostgresCluster, app_database: str, shop_database: str
) -> None:
    # Everything an option file or a connection string could stumble on.
    secret = "p#w \"x' y\\z;"
    password = setup.dir / "db.pw"
    password.write_text(secret + "\n")
    password.chmod(0o600)
    role = f"fb_pw_{uuid.uuid4().hex[:6]}"
    postgres_cluster.require_password(role, secret)
    _mariadb("--execute", f"CREATE USER '{role}'@'%' IDENTIFIED BY {_mariadb_literal(secret)}")
    try:
        _mariadb("--execute", f"GRANT ALL ON `{shop_database}%`.* TO '{role}'@'%'")
        sites = _three_sites(setup)
        setup.source(
            "pg",
            sites,
            paths=[],
            postgresql={
                "databases": [app_database],
                "host": "127.0.0.1",
                "port": postgres_cluster.port,
                "user": role,
                "password": f"file:{password}",
            },
        )
        setup.source(
            "shop",
            sites,
            paths=[],
            mariadb={
                "databases": [shop_database],
                "host": "127.0.0.1",
                "port": 3306,
                "user": role,
                "password": f"file:{password}",
                "scratch_database": f"{shop_database}_drill",
            },
        )
        config = setup.write()
        # A ~/.my.cnf with another password must not win over the config's.
        home = setup.dir / "home"
        home.mkdir()
        (home / ".my.cnf").write_text("[client]\npassword=not-the-one\n")
        env = dict(os.environ, HOME=str(home))
        with _Watcher(secret, setup.dir / "state") as watcher:
            outputs = [
                firebreak(config, "backup", "pg", env=env),
                firebreak(config, "backup", "shop", env=env),
                firebreak(config, "drill", "shop", "--site", "a", env=env),
            ]
        for done in outputs:
            assert done.returncode == 0, done.stdout + done.stderr
            assert secret not in done.stdout + done.stderr
        assert watcher.piped > 0, "the watcher never saw a MariaDB program"
        assert watcher.seen == []
        assert "1 table, 3000 rows" in outputs[2].stdout
        # A wrong password is the server's refusal, in words, and still no secret.
        password.write_text("not-it\n")
        refused = firebreak(config, "backup", "shop")
        assert refused.returncode == 4
        assert "Access denied for user" in refused.stdout, refused.stdout
    finally:
        _mariadb("--execute", f"DROP USER IF EXISTS '{role}'@'%'")


def test_all_databases_with_globals_leave_out_the_scratch_database(
    setup: Setup, postgres_cluster: PostgresCluster, app_database: str
) -> None:
    scratch = f"{app_database}_scratch"
    postgres_cluster.create_database(scratch)  # a drill's leftover: never dumped
    try:
        setup.source(
            "everything",
            _three_sites(setup)[:1],
            paths=[],
            postgresql={
                "databases": "all",
                "host": "127.0.0.1",
                "port": postgres_cluster.port,
                "user": "postgres",
                "scratch_database": scratch,
            },
        )
        config = setup.write()
        done = firebreak(config, "backup", "everything")
        assert done.returncode == 0, done.stdout + done.stderr
        files = _snapshot_files(setup.dir / "repo-a")
        assert f"/{app_database}.pgdump" in files
        assert "/postgres.pgdump" in files and "/globals.sql" in files
        assert f"/{scratch}.pgdump" not in files
        assert not any("template" in name for name in files)
        target = setup.dir / "restored"
        restored = firebreak(config, "restore", "everything", "--target", str(target))
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "roles first:  psql" in restored.stdout
        assert "CREATE ROLE postgres" in (target / "globals.sql").read_text()
    finally:
        _psql(postgres_cluster, "postgres", f"DROP DATABASE IF EXISTS {scratch}")


def test_a_truncated_dump_fails_the_drill_and_damages_the_site(
    setup: Setup, postgres_cluster: PostgresCluster, app_database: str
) -> None:
    good = setup.dir / "good.pgdump"
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={good}", postgres_cluster.dsn(app_database)],
        check=True,
    )
    truncated = good.read_bytes()[: good.stat().st_size // 2]
    (setup.dir / "half.pgdump").write_bytes(truncated)
    # What a dump program that lost half its output would have stored: the same file name,
    # backed up by firebreak as a command source, then drilled as the PostgreSQL source.
    setup.local_site("a")
    setup.source(
        "app-db",
        ["a"],
        paths=[],
        command=["cat", str(setup.dir / "half.pgdump")],
        stdin_filename=f"{app_database}.pgdump",
    )
    assert firebreak(setup.write(), "backup", "app-db").returncode == 0
    del setup.sources["app-db"]["command"], setup.sources["app-db"]["stdin_filename"]
    setup.sources["app-db"]["postgresql"] = {
        "databases": [app_database],
        "host": "127.0.0.1",
        "port": postgres_cluster.port,
        "user": "postgres",
    }
    config = setup.write()
    drill = firebreak(config, "drill", "app-db")
    assert drill.returncode != 0
    [run] = [r for r in setup.runs() if r.operation == "drill"]
    assert run.error_class == "DrillFailed", run.error_message
    assert f"pg_restore of {app_database}.pgdump exited 1" in (run.error_message or "")
    status = firebreak(config, "status")
    assert "DAMAGED" in status.stdout, status.stdout


def test_drills_that_share_a_scratch_database_take_turns(setup: Setup, shop_database: str) -> None:
    sites = _three_sites(setup)[:2]
    server = {
        "databases": [shop_database],
        "host": "127.0.0.1",
        "port": 3306,
        "user": "root",
        "scratch_database": f"{shop_database}_drill",
    }
    setup.source("shop", sites, paths=[], mariadb=server)
    setup.source("shop-copy", sites, paths=[], mariadb=server)
    config = setup.write()
    for source in ("shop", "shop-copy"):
        assert firebreak(config, "backup", source).returncode == 0
    command = [sys.executable, "-m", "firebreak", "-c", str(config), "drill"]
    # While something else holds the scratch database, a drill waits for it, and holds
    # neither its site nor a run slot meanwhile: the site's backups go on.
    held = setup.load().sources["shop-copy"]
    with scratch_lock(setup.dir / "state" / "locks", held, None):
        waiting = subprocess.Popen(
            [*command, "shop", "--site", "a"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(3)
        backup = firebreak(config, "backup", "shop", "--site", "a", timeout=60)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert waiting.poll() is None, waiting.communicate()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out + err
    # Four at once: each loads and counts alone.
    drills = [
        subprocess.Popen([*command, source, "--site", site], stdout=subprocess.PIPE, text=True)
        for source in ("shop", "shop-copy")
        for site in sites
    ]
    outputs = [drill.communicate(timeout=300)[0] for drill in drills]
    assert [drill.returncode for drill in drills] == [0] * 4, outputs
    for output in outputs:
        assert "1 table, 3000 rows" in output, output
