"""Real servers on 127.0.0.1 for tests that drive the real ``restic``.

Each server class can be used as a context manager or through ``start()`` / ``stop()``.
``stop()`` only stops the process and keeps all data, so a stopped server can be started
again (on the same port) to simulate a site outage; ``close()`` stops it and removes the
temporary files it created itself.

The pytest fixtures at the bottom of this module are session-scoped. Tests that stop or
restart a server must not do that to a shared session server: use ``rest_server_factory``
(or construct their own server) instead.

Nothing here talks to anything but 127.0.0.1, and no secret is ever printed or logged.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, Protocol, Self

import pytest

from tests.support.restics import CACHE as RESTIC_CACHE

__all__ = [
    "PostgresCluster",
    "RestServer",
    "S3Server",
    "ServerError",
    "ServerUnavailable",
    "SftpServer",
    "find_moto_server",
    "find_postgres_bindir",
    "find_sshd",
    "free_port",
    "postgres_cluster_fixture",
    "rest_server_factory_fixture",
    "rest_server_fixture",
    "s3_server_fixture",
    "sftp_server_fixture",
    "wait_for_port",
]

LOOPBACK = "127.0.0.1"
_STOP_TIMEOUT = 10.0
_LOG_TAIL_CHARS = 2000


class ServerError(RuntimeError):
    """A test server could not be started or stopped."""


class ServerUnavailable(ServerError):
    """A prerequisite is missing (binary, privileges); fixtures turn this into a skip."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(log_path: Path | None) -> str:
    if log_path is None:
        return ""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    text = text[-_LOG_TAIL_CHARS:].strip()
    return f"\n--- last lines of {log_path} ---\n{text}" if text else ""


def wait_for_port(
    port: int,
    timeout: float = 10.0,
    *,
    name: str = "server",
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    host: str = LOOPBACK,
) -> None:
    """Wait until something accepts TCP connections on ``host`` (127.0.0.1):``port``.

    Raises ``ServerError`` naming ``name`` if the port does not open within ``timeout``
    seconds, or at once if ``process`` exits first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ServerError(
                f"{name} exited with code {process.returncode} before it opened "
                f"{host}:{port}{_log_tail(log_path)}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise ServerError(
                f"{name} did not open {host}:{port} within {timeout:.1f} s{_log_tail(log_path)}"
            )
        time.sleep(0.05)


def _run(
    argv: list[str], *, what: str, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a helper command; raise ``ServerError`` with its output if it fails."""
    try:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what} timed out after {timeout:.0f} s") from exc
    if result.returncode != 0:
        output = (result.stderr + result.stdout).strip()[-_LOG_TAIL_CHARS:]
        raise ServerError(f"{what} failed with code {result.returncode}: {output}")
    return result


def _is_root() -> bool:
    return os.geteuid() == 0


def _terminate(process: subprocess.Popen[bytes], timeout: float = _STOP_TIMEOUT) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


# Servers still running when the interpreter exits (e.g. after a hard interrupt) are stopped.
_live: weakref.WeakSet[_Stoppable] = weakref.WeakSet()


@atexit.register
def _stop_all_live() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            server.stop()


# --------------------------------------------------------------------------- base class


class _ProcessServer:
    """A server that is one child process listening on a loopback port."""

    kind = "server"

    def __init__(self, port: int | None, log_path: Path | None, host: str = LOOPBACK) -> None:
        self.host = host
        self.port: int = port if port is not None else free_port()
        self._own_dirs: list[Path] = []
        if log_path is None:
            log_dir = Path(tempfile.mkdtemp(prefix=f"firebreak-{self.kind}-log-"))
            self._own_dirs.append(log_dir)
            log_path = log_dir / f"{self.kind}.log"
        self.log_path: Path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # subclasses provide the command line
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _before_start(self) -> None:
        """Hook run before the process is spawned."""

    def _env(self) -> dict[str, str] | None:
        return None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        self._before_start()
        argv = self._command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise ServerError(f"cannot run {self.kind} ({argv[0]}): {exc}") from exc
        _live.add(self)
        try:
            wait_for_port(
                self.port,
                timeout,
                name=f"{self.kind} ({argv[0]})",
                process=self._process,
                log_path=self.log_path,
                host=self.host,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None
        self._close_log()
        _live.discard(self)

    def close(self) -> None:
        """Stop and remove the temporary files this object created itself."""
        self.stop()
        for path in self._own_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._own_dirs.clear()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- REST


class RestServer(_ProcessServer):
    """``rclone serve restic`` on 127.0.0.1; one restic repository per sub-path of ``root``."""

    kind = "rest-server"

    def __init__(
        self,
        root: Path,
        append_only: bool = False,
        port: int | None = None,
        *,
        log_path: Path | None = None,
        host: str = LOOPBACK,
        htpasswd: Path | None = None,
    ) -> None:
        super().__init__(port, log_path, host)
        self.root: Path = Path(root)
        self.append_only = append_only
        # Users and bcrypt hashes (name:$2b$...): then every request needs a user's password.
        self.htpasswd = htpasswd

    def _command(self) -> list[str]:
        rclone = shutil.which("rclone")
        if rclone is None:
            raise ServerUnavailable("rclone is not installed")
        argv = [rclone, "serve", "restic", "--addr", f"{self.host}:{self.port}"]
        if self.append_only:
            argv.append("--append-only")
        if self.htpasswd is not None:
            argv += ["--htpasswd", str(self.htpasswd)]
        argv.append(str(self.root))
        return argv

    def _before_start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _env(self) -> dict[str, str]:
        # keep rclone away from any user rclone.conf
        env = dict(os.environ)
        env["RCLONE_CONFIG"] = os.devnull
        return env

    def url(self, name: str) -> str:
        """Repository URL for restic, e.g. ``rest:http://127.0.0.1:PORT/NAME``."""
        return f"rest:http://{self.host}:{self.port}/{name.strip('/')}"


class RealRestServer(RestServer):
    """restic's own rest-server (Debian's restic-rest-server, unpacked by make
    restic-versions), without auth: the server people run with ``--append-only``."""

    kind = "restic-rest-server"

    def _command(self) -> list[str]:
        binary = real_rest_server()
        if binary is None:
            raise ServerUnavailable("restic-rest-server is not unpacked: run make restic-versions")
        argv = [str(binary), "--path", str(self.root), "--listen", f"{self.host}:{self.port}"]
        argv.append("--no-auth")
        if self.append_only:
            argv.append("--append-only")
        return argv

    def _env(self) -> dict[str, str]:
        return dict(os.environ)


def real_rest_server() -> Path | None:
    binary = RESTIC_CACHE / "rest-server/usr/bin/restic-rest-server"
    return binary if os.access(binary, os.X_OK) else None


# --------------------------------------------------------------------------- SFTP


def find_sshd() -> str | None:
    """Absolute path of ``sshd`` (sshd refuses to re-exec from a relative path)."""
    found = shutil.which("sshd")
    if found is not None:
        return os.path.abspath(found)
    for candidate in ("/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _ensure_user(user: str) -> Path:
    """Create ``user`` (with a home directory) if missing and unlock it for key logins."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        # Test workers run at once (pytest-xdist): another may create the user meanwhile.
        try:
            _run(["useradd", "-m", "-s", "/bin/sh", user], what=f"useradd {user}")
        except ServerError:
            if user not in {known.pw_name for known in pwd.getpwall()}:
                raise
        entry = pwd.getpwnam(user)
    # useradd leaves the account locked ("!"), and sshd refuses locked accounts.
    _run(["usermod", "-p", "*", user], what=f"usermod -p '*' {user}")
    home = Path(entry.pw_dir)
    if not home.is_dir():
        home.mkdir(parents=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    return home


class SftpServer(_ProcessServer):
    """OpenSSH ``sshd`` on a loopback port, serving SFTP to one dedicated test user.

    Needs root (sshd must switch to the test user). Each instance keeps its repositories
    (and its ``authorized_keys``) in its own directory under the user's home, so several
    instances or sessions never collide.
    """

    kind = "sshd"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        user: str = "fbtest",
        alias: str | None = None,
    ) -> None:
        self.workdir: Path = Path(workdir)
        super().__init__(port, self.workdir / "sshd.log")
        self.user = user
        self.alias: str = alias or f"firebreak-sftp-{self.port}"
        self.instance = f"firebreak-{uuid.uuid4().hex[:12]}"
        self.home: Path = Path("/home") / user
        self.ssh_config: Path = self.workdir / "ssh_config"
        self.sshd_config: Path = self.workdir / "sshd_config"
        self.host_key: Path = self.workdir / "ssh_host_ed25519_key"
        self.client_key: Path = self.workdir / "id_ed25519"
        self.known_hosts: Path = self.workdir / "known_hosts"
        self._prepared = False
        self._sshd = ""

    @property
    def base_dir(self) -> Path:
        """Directory (owned by the test user) that holds this instance's repositories."""
        return self.home / self.instance

    def repository(self, name: str) -> str:
        """Repository URL for restic, e.g. ``sftp:ALIAS:/home/fbtest/firebreak-…/NAME``."""
        return f"sftp:{self.alias}:{self.base_dir / name.strip('/')}"

    def restic_options(self) -> list[str]:
        """Values for restic's ``-o`` (one ``-o`` per item)."""
        return [f"sftp.command=ssh -F {self.ssh_config} {self.alias} -s sftp"]

    def ssh_argv(self, *command: str) -> list[str]:
        """``ssh`` argv that logs in as the test user with the hermetic client config."""
        return ["ssh", "-F", str(self.ssh_config), self.alias, *command]

    def _prepare(self) -> None:
        if self._prepared:
            return
        if not _is_root():
            raise ServerUnavailable("SftpServer needs root (sshd must switch users)")
        sshd = find_sshd()
        if sshd is None:
            raise ServerUnavailable("sshd is not installed (apt-get install openssh-server)")
        for tool in ("ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise ServerUnavailable(f"{tool} is not installed (openssh-client)")
        self._sshd = sshd

        self.home = _ensure_user(self.user)
        entry = pwd.getpwnam(self.user)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)

        for key in (self.host_key, self.client_key):
            if not key.exists():
                _run(
                    [
                        "ssh-keygen",
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "firebreak-test",
                        "-f",
                        str(key),
                    ],
                    what="ssh-keygen",
                )

        # Per-instance directory in the user's home: owned by the user, mode 0700. The
        # authorized_keys file lives there too because sshd reads it as the user, who
        # cannot traverse pytest's 0700 temp directories.
        ssh_dir = self.base_dir / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        for path in (self.base_dir, ssh_dir, authorized):
            os.chown(path, entry.pw_uid, entry.pw_gid)
            path.chmod(0o600 if path == authorized else 0o700)

        self.sshd_config.write_text(
            "\n".join(
                [
                    f"ListenAddress {LOOPBACK}:{self.port}",
                    f"HostKey {self.host_key}",
                    "PidFile none",
                    "UsePAM no",
                    "PubkeyAuthentication yes",
                    "AuthenticationMethods publickey",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    f"AllowUsers {self.user}",
                    f"AuthorizedKeysFile {authorized}",
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    "PrintMotd no",
                    "UseDNS no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 50",
                    "LogLevel INFO",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        # HostKeyAlias makes the known_hosts entry independent of the port.
        self.known_hosts.write_text(f"{self.alias} {host_pub[0]} {host_pub[1]}\n")
        self.ssh_config.write_text(
            "\n".join(
                [
                    f"Host {self.alias}",
                    f"    HostName {LOOPBACK}",
                    f"    Port {self.port}",
                    f"    User {self.user}",
                    f"    IdentityFile {self.client_key}",
                    "    IdentitiesOnly yes",
                    "    IdentityAgent none",
                    "    BatchMode yes",
                    f"    HostKeyAlias {self.alias}",
                    f"    UserKnownHostsFile {self.known_hosts}",
                    "    GlobalKnownHostsFile /dev/null",
                    "    StrictHostKeyChecking yes",
                    "    CheckHostIP no",
                    "    UpdateHostKeys no",
                    "    ControlMaster no",
                    "    ControlPath none",
                    "    ConnectTimeout 10",
                    "    ServerAliveInterval 5",
                    "    ServerAliveCountMax 3",
                    "    LogLevel ERROR",
                    "",
                ]
            )
        )
        _run([sshd, "-t", "-f", str(self.sshd_config)], what="sshd -t (config check)")
        self._prepared = True

    def _before_start(self) -> None:
        self._prepare()

    def _command(self) -> list[str]:
        return [self._sshd, "-D", "-e", "-f", str(self.sshd_config)]

    def close(self) -> None:
        """Stop sshd and remove this instance's directory (and repositories) from the home."""
        try:
            super().close()
        finally:
            if self._prepared:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self._prepared = False


# --------------------------------------------------------------------------- S3


def find_moto_server() -> str | None:
    """``moto_server`` next to the running interpreter first, then on ``PATH``."""
    beside = Path(sys.executable).parent / "moto_server"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("moto_server")


class S3Server(_ProcessServer):
    """In-memory S3 (moto) on 127.0.0.1. Data is lost when it stops."""

    kind = "moto-s3"

    ACCESS_KEY_ID = "firebreak-test-access-key"
    SECRET_ACCESS_KEY = "firebreak-test-secret-key"  # throwaway value, moto accepts anything
    REGION = "us-east-1"

    def __init__(self, port: int | None = None, *, log_path: Path | None = None) -> None:
        super().__init__(port, log_path)

    def _command(self) -> list[str]:
        moto = find_moto_server()
        if moto is None:
            raise ServerUnavailable("moto_server is not installed (pip install 'moto[server]')")
        return [moto, "-H", LOOPBACK, "-p", str(self.port)]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env())
        return env

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def repository(self, bucket: str) -> str:
        """Repository URL for restic, e.g. ``s3:http://127.0.0.1:PORT/BUCKET[/prefix]``."""
        return f"s3:{self.endpoint}/{bucket.strip('/')}"

    def env(self) -> dict[str, str]:
        """Environment restic needs to reach this server (throwaway credentials)."""
        return {
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.REGION,
        }

    def reset(self) -> None:
        """Drop every bucket and object (``POST /moto-api/reset``)."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            response.read()


# --------------------------------------------------------------------------- PostgreSQL


def _version_key(path: Path) -> tuple[int, ...]:
    parts = re.findall(r"\d+", path.name)
    return tuple(int(p) for p in parts) if parts else (-1,)


def find_postgres_bindir() -> Path | None:
    """``/usr/lib/postgresql/<highest version>/bin``, else the directory of ``initdb`` on PATH."""
    candidates = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if os.access(p, os.X_OK) and (p.parent / "pg_ctl").exists()
    ]
    if candidates:
        return max(candidates, key=lambda b: _version_key(b.parent))
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).parent
    return None


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresCluster:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 with ``trust`` auth.

    As root the cluster runs as the ``postgres`` system user; its files then live in a fresh
    ``/tmp/firebreak-pg-*`` directory (pytest's temp dirs are 0700 root and not reachable
    by ``postgres``), removed by ``close()``.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        *,
        bindir: Path | None = None,
        os_user: str = "postgres",
    ) -> None:
        self.port: int = port if port is not None else free_port()
        self._bindir = bindir
        self._os_user = os_user
        self._workdir = workdir
        self._base: Path | None = None
        self._own_base = False
        self._initialised = False
        self._running = False

    # paths -----------------------------------------------------------------
    @property
    def base(self) -> Path:
        if self._base is None:
            raise ServerError("PostgresCluster has not been started")
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            found = find_postgres_bindir()
            if found is None:
                raise ServerUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")
            self._bindir = found
        return self._bindir

    @property
    def running(self) -> bool:
        return self._running

    # commands ----------------------------------------------------------------
    def _as_owner(self, argv: list[str]) -> list[str]:
        if _is_root():
            return ["runuser", "-u", self._os_user, "--", *argv]
        return argv

    def _setup_base(self) -> None:
        if self._base is not None:
            return
        if _is_root():
            try:
                entry = pwd.getpwnam(self._os_user)
            except KeyError as exc:
                raise ServerUnavailable(f"no '{self._os_user}' system user to run initdb") from exc
            base = Path(tempfile.mkdtemp(prefix="firebreak-pg-"))
            os.chown(base, entry.pw_uid, entry.pw_gid)
            self._own_base = True
        elif self._workdir is not None:
            base = self._workdir
            base.mkdir(parents=True, exist_ok=True)
        else:
            base = Path(tempfile.mkdtemp(prefix="firebreak-pg-"))
            self._own_base = True
        self._base = base

    def _initdb(self) -> None:
        if self._initialised:
            return
        self._run_owner(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            what="initdb",
        )
        self._initialised = True

    def _run_owner(self, argv: list[str], *, what: str, timeout: float = 60.0) -> None:
        _run(self._as_owner(argv), what=what, timeout=timeout, cwd=self.base)

    def start(self, timeout: float = 30.0) -> None:
        if self._running:
            return
        _ = self.bindir  # raise ServerUnavailable early
        self._setup_base()
        self._initdb()
        options = (
            f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.data_dir} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run_owner(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-t",
                str(int(timeout)),
                "-w",
                "start",
            ],
            what="pg_ctl start",
            timeout=timeout + 10,
        )
        self._running = True
        _live.add(self)
        wait_for_port(self.port, timeout, name="postgres", log_path=self.log_path)

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: at once by default (a crash: with this cluster's settings, the
        latest commits are lost, acknowledged or not), or "fast" (a clean shutdown, as for
        maintenance: nothing committed is lost)."""
        if not self._running:
            return
        try:
            self._run_owner(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "stop",
                ],
                what="pg_ctl stop",
            )
        finally:
            self._running = False
            _live.discard(self)

    def close(self) -> None:
        """Stop the cluster and remove its files if this object created the directory."""
        try:
            self.stop()
        finally:
            if self._own_base and self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None
                self._initialised = False

    # URLs ----------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL, ``postgresql+psycopg://postgres@127.0.0.1:PORT/DBNAME``."""
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URI for ``psycopg.connect``."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        if name is None:
            name = f"fb_{uuid.uuid4().hex[:16]}"
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a simple database name: {name!r}")
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def require_password(self, role: str, password: str) -> None:
        """A login role that must give its password over TCP (scram-sha-256), while every
        other role keeps ``trust``: for tests that a password reaches the server."""
        import psycopg

        if not _IDENTIFIER.match(role):
            raise ValueError(f"not a simple role name: {role!r}")
        hba = self.data_dir / "pg_hba.conf"
        rule = f"host all {role} {LOOPBACK}/32 scram-sha-256\n"
        if rule not in hba.read_text():
            hba.write_text(rule + hba.read_text())
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD {_literal(password)}")
            conn.execute("GRANT pg_read_all_data TO " + role)
            conn.execute("SELECT pg_reload_conf()")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _literal(text: str) -> str:
    """An SQL string literal (a test's own password, in a statement that takes no
    parameters)."""
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------- fixtures


def _skip_unavailable(exc: ServerUnavailable) -> NoReturn:
    pytest.skip(str(exc))


@pytest.fixture(scope="session", name="rest_server")
def rest_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    """A shared ``rclone serve restic`` server. Do not stop it in tests."""
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not installed")
    base = tmp_path_factory.mktemp("rest-server")
    server = RestServer(base / "root", log_path=base / "rclone.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(name="rest_server_factory")
def rest_server_factory_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RestServer]]:
    """Make private (started) REST servers, e.g. to stop and restart them; all stopped after."""
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not installed")
    made: list[RestServer] = []

    def make(
        append_only: bool = False, port: int | None = None, *, real: bool = False
    ) -> RestServer:
        """real: restic's rest-server instead of rclone's."""
        if real and real_rest_server() is None:
            why = "restic-rest-server is not unpacked: run make restic-versions"
            if os.environ.get("CI"):
                pytest.fail(why)  # make test unpacks it: CI must not skip what it tests
            pytest.skip(why)
        base = tmp_path_factory.mktemp("rest-server")
        kind = RealRestServer if real else RestServer
        server = kind(base / "root", append_only, port, log_path=base / "server.log")
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()


@pytest.fixture(scope="session", name="sftp_server")
def sftp_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    """A shared sshd serving SFTP as user ``fbtest`` (needs root)."""
    if not _is_root():
        pytest.skip("the SFTP server fixture needs root (sshd must switch to the test user)")
    if find_sshd() is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    server = SftpServer(tmp_path_factory.mktemp("sftp-server"))
    try:
        try:
            server.start()
        except ServerUnavailable as exc:
            _skip_unavailable(exc)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A shared in-memory S3 server (moto). Use a unique bucket per test."""
    if find_moto_server() is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    base = tmp_path_factory.mktemp("s3-server")
    server = S3Server(log_path=base / "moto.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session", name="postgres_cluster")
def postgres_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A shared throwaway PostgreSQL cluster. Use ``create_database()`` per test."""
    if find_postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    cluster = PostgresCluster(tmp_path_factory.mktemp("postgres"))
    try:
        try:
            cluster.start()
        except ServerUnavailable as exc:
            _skip_unavailable(exc)
        yield cluster
    finally:
        cluster.close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers (restic waits on it
    forever: the stall detector's case). Yields the port."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(16)
        yield silent.getsockname()[1]
