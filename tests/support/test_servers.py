"""Self-test of tests/support/servers.py: real restic against every real server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

# The fixtures are registered by importing them into this module. Each fixture function is
# named ``<fixture>_fixture`` and declared with ``name="<fixture>"``, so test parameters do not
# shadow the imported names.
from .servers import (
    PostgresCluster,
    RestServer,
    S3Server,
    ServerError,
    SftpServer,
    free_port,
    postgres_cluster_fixture,  # noqa: F401
    rest_server_factory_fixture,  # noqa: F401
    rest_server_fixture,  # noqa: F401
    s3_server_fixture,  # noqa: F401
    sftp_server_fixture,  # noqa: F401
    wait_for_port,
)

RESTIC = shutil.which("restic")
pytestmark = pytest.mark.skipif(RESTIC is None, reason="restic is not installed")


class Restic:
    """Runs restic with a password file, its own cache dir and a fresh environment."""

    def __init__(self, tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
        password_file = tmp_path / "restic-password"
        password_file.write_text("throwaway-test-password\n")
        password_file.chmod(0o600)
        self.cache_dir = tmp_path / "restic-cache"
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "RESTIC_PASSWORD_FILE": str(password_file),
            **(extra_env or {}),
        }

    def run(
        self, repo: str, *args: str, options: Sequence[str] = (), timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        assert RESTIC is not None
        argv = [RESTIC, "--repo", repo, "--cache-dir", str(self.cache_dir)]
        for option in options:
            argv += ["-o", option]
        argv += list(args)
        return subprocess.run(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def check(self, repo: str, *args: str, options: Sequence[str] = ()) -> str:
        result = self.run(repo, *args, options=options)
        assert result.returncode == 0, f"restic {args[0]} failed: {result.stderr}"
        return result.stdout


def _init_backup_snapshots(
    tmp_path: Path, repo: str, *, options: Sequence[str] = (), env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "hello.txt").write_text("hello firebreak\n")
    (source / "sub").mkdir()
    (source / "sub" / "data.bin").write_bytes(os.urandom(4096))

    restic = Restic(tmp_path, env)
    restic.check(repo, "init", options=options)
    restic.check(repo, "backup", "--host", "selftest", str(source), options=options)
    snapshots: list[dict[str, Any]] = json.loads(
        restic.check(repo, "snapshots", "--json", options=options)
    )
    assert len(snapshots) == 1
    assert snapshots[0]["paths"] == [str(source)]
    assert snapshots[0]["hostname"] == "selftest"
    return snapshots


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_port_names_the_server() -> None:
    with pytest.raises(ServerError, match="my-server did not open"):
        wait_for_port(free_port(), timeout=0.3, name="my-server")


def test_rest(rest_server: RestServer, tmp_path: Path) -> None:
    _init_backup_snapshots(tmp_path, rest_server.url("selftest-rest"))
    assert (rest_server.root / "selftest-rest" / "config").is_file()


def test_rest_restart_on_same_port(
    rest_server_factory: Callable[..., RestServer], tmp_path: Path
) -> None:
    server = rest_server_factory()
    port = server.port
    repo = server.url("outage")
    restic = Restic(tmp_path)
    restic.check(repo, "init")

    server.stop()
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    server.start()
    assert server.port == port
    assert restic.check(repo, "snapshots", "--json").strip() == "[]"


def test_rest_append_only(rest_server_factory: Callable[..., RestServer], tmp_path: Path) -> None:
    # restic itself retries a refused delete for ~45 s, so probe the HTTP API directly.
    server = rest_server_factory(append_only=True)
    Restic(tmp_path).check(server.url("immutable"), "init")
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/immutable/config", method="DELETE"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=10)
    assert refused.value.code == 403
    assert (server.root / "immutable" / "config").is_file()


@pytest.mark.root
def test_sftp(sftp_server: SftpServer, tmp_path: Path) -> None:
    repo = sftp_server.repository("selftest-sftp")
    assert repo.startswith(f"sftp:{sftp_server.alias}:/home/{sftp_server.user}/")
    _init_backup_snapshots(tmp_path, repo, options=sftp_server.restic_options())


def test_s3(s3_server: S3Server, tmp_path: Path) -> None:
    _init_backup_snapshots(tmp_path, s3_server.repository("selftest-bucket"), env=s3_server.env())


def test_postgres(postgres_cluster: PostgresCluster) -> None:
    import psycopg

    url = postgres_cluster.create_database("fb_selftest")
    assert url == (f"postgresql+psycopg://postgres@127.0.0.1:{postgres_cluster.port}/fb_selftest")
    with psycopg.connect(postgres_cluster.dsn("fb_selftest"), connect_timeout=10) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row == (1,)
