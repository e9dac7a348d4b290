"""sd_notify to a real datagram socket, and the shipped unit checked by systemd-analyze."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from firebreak.daemon.systemd import Notifier

ROOT = Path(__file__).resolve().parents[3]


def test_notifications_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
        assert notifier.enabled and notifier.watchdog_seconds == 4.0
        notifier.notify("READY=1", "STATUS=1 sources")
        assert listener.recv(100) == b"READY=1\nSTATUS=1 sources"


def test_outside_systemd_it_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_seconds is None
    notifier.notify("READY=1")


def test_a_watchdog_for_another_pid_is_not_ours() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_seconds is None or os.getpid() == 1


def test_a_full_or_missing_socket_never_blocks_or_raises(tmp_path: Path) -> None:
    path = tmp_path / "full.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        for _ in range(5000):  # far more than the socket queues; nobody reads
            notifier.notify("WATCHDOG=1")
    Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).notify("READY=1")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_verifies_cleanly_and_is_hardened(tmp_path: Path) -> None:
    unit = tmp_path / "firebreak.service"
    text = (ROOT / "deploy" / "systemd" / "firebreak.service").read_text()
    # verify wants ExecStart's program to exist; the installed path is /opt/firebreak.
    unit.write_text(text.replace("/opt/firebreak/bin/firebreak", "/bin/true"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-400:]
    exposure = float(
        security.stdout.rsplit("Overall exposure level for firebreak.service:", 1)[1].split()[0]
    )
    assert exposure <= 2.0
    assert "Type=notify" in text and "AmbientCapabilities=CAP_DAC_READ_SEARCH" in text


def test_the_unit_yields_to_the_workload_and_its_documentation_exists_after_install() -> None:
    text = (ROOT / "deploy" / "systemd" / "firebreak.service").read_text()
    for setting in ("Nice=10", "IOSchedulingClass=best-effort", "IOWeight=50", "CPUWeight=50"):
        assert setting in text.splitlines(), setting
    # install.md clones the repository to /usr/local/src/firebreak: the pages are there.
    install = (ROOT / "docs" / "install.md").read_text()
    assert "git clone <this repository> /usr/local/src/firebreak" in install
    pages = [
        line.split("file:///usr/local/src/firebreak/", 1)[1]
        for line in text.splitlines()
        if line.startswith("Documentation=")
    ]
    assert pages and all((ROOT / page).is_file() for page in pages), pages
    assert "CacheDirectory=" not in text, "a cache directory nothing uses"
