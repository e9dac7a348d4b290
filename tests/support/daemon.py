"""A real ``firebreak run`` process for tests, with a NOTIFY_SOCKET to listen on."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


class DaemonProcess:
    def __init__(
        self,
        config: Path,
        workdir: Path,
        *,
        watchdog_usec: int | None = 2_000_000,
        verbose: int = 0,
    ):
        self.config = config
        self.log_path = workdir / f"daemon-{time.monotonic_ns()}.log"
        # Not under workdir: a socket's path has room for 107 bytes only, fewer than a deep
        # pytest or bench directory takes.
        self.notify_dir = Path(tempfile.mkdtemp(prefix="fb-notify-"))
        self.notify_path = self.notify_dir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify_path))
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "firebreak",
                "-c",
                str(config),
                *(["-" + "v" * verbose] if verbose else []),
                "run",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def receive(self, seconds: float = 0.2) -> list[str]:
        """Collect notifications for a while; returns everything received so far."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) before {what}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")
            self.receive(0.2)

    def ready(self, timeout: float = 60) -> None:
        self.wait_for("READY=1", lambda: any("READY=1" in m for m in self.messages), timeout)

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
            self.receive(0.3)  # what it said on the way out
            return code
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
        self.notify.close()
        shutil.rmtree(self.notify_dir, ignore_errors=True)


def restic_processes(marker: str) -> list[int]:
    """Live restic processes whose command line mentions marker (a test's cache dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().split(") ")[1][0]
        except OSError:
            continue
        if b"restic" in cmdline and marker.encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found
