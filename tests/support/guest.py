"""A Debian 12 guest with a real systemd as PID 1, under qemu's software emulation: booted
once and saved, then restored for each test in about two seconds.

The disks are stacked so that a restore is safe: ``rootfs.ext4`` (built once) ← a frozen
qcow2 that the saved guest wrote to ← one throw-away qcow2 per restored guest. The saved
memory belongs to exactly that frozen disk: it is never written again.

The test talks to the guest over ssh (qemu forwards a loopback port to its port 22); the guest
reaches servers on the host's loopback at 10.0.2.10N:8000 (``guestfwd``, one socat per
connection). Nothing else leaves the guest: its network is ``restrict=on``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.servers import free_port

MEMORY_MB = "1024"
BOOT = "boot"  # the snapshot of the freshly booted image


class Qmp:
    """qemu's machine protocol on a unix socket: stop, save, continue, quit."""

    def __init__(self, path: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.stream = self.sock.makefile("rwb")
        json.loads(self.stream.readline())  # the greeting
        self.command("qmp_capabilities")

    def command(self, name: str, **arguments: Any) -> Any:
        message: dict[str, Any] = {"execute": name}
        if arguments:
            message["arguments"] = arguments
        self.stream.write(json.dumps(message).encode() + b"\n")
        self.stream.flush()
        while True:
            reply = json.loads(self.stream.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"qemu {name}: {reply['error']}")
            return reply["return"]


class Guest:
    def __init__(
        self,
        cache: Path,
        workdir: Path,
        disk: Path,
        *,
        incoming: Path | None = None,
        forwards: dict[str, int] | None = None,
    ) -> None:
        """forwards: guest address (``10.0.2.100:8000``) → the host's loopback port."""
        self.cache, self.dir, self.disk = cache, workdir, disk
        self.ssh_port = free_port()
        self.console = workdir / "console.log"
        netdev = f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"
        for address, port in (forwards or {}).items():
            netdev += f",guestfwd=tcp:{address}-cmd:socat - TCP:127.0.0.1:{port}"
        # What describes the machine must be the same when saved and when restored; only the
        # host's side (ports, sockets, the disk file) may change.
        argv = [
            "qemu-system-x86_64",
            "-accel",
            "tcg",  # /dev/kvm here is a nested software module, far slower than TCG
            "-m",
            MEMORY_MB,
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(cache / "vmlinuz"),
            "-initrd",
            str(cache / "initrd.img"),
            "-append",
            "root=/dev/vda rw console=ttyS0 quiet panic=-1 systemd.show_status=0",
            "-drive",
            f"file={disk},format=qcow2,if=virtio,cache=unsafe",
            "-device",
            "virtio-net-pci,netdev=n0,romfile=",
            "-netdev",
            netdev,
            "-serial",
            f"file:{self.console}",
            "-device",
            "virtio-rng-pci",
            "-qmp",
            f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
        ]
        if incoming is not None:
            argv += ["-incoming", f"exec:cat {shlex.quote(str(incoming))}"]
        with (workdir / "qemu.out").open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.qmp = Qmp(workdir / "qmp.sock")
        self._control = workdir / "ssh.ctl"

    @staticmethod
    def snapshot(cache: Path, name: str) -> tuple[Path, Path]:
        """(frozen disk, saved state) of the snapshot NAME."""
        return cache / f"{name}.qcow2", cache / f"{name}.state"

    @classmethod
    def restore(
        cls, cache: Path, workdir: Path, name: str = BOOT, forwards: dict[str, int] | None = None
    ) -> Guest:
        """A copy of snapshot NAME, running, its clock set to the host's."""
        base, state = cls.snapshot(cache, name)
        disk = workdir / "disk.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk)],
            check=True,
        )
        guest = cls(cache, workdir, disk, incoming=state, forwards=forwards)
        try:
            deadline = time.monotonic() + 60
            while (status := guest.qmp.command("query-status")["status"]) != "running":
                if status == "paused":  # saved from a stopped guest: it arrives stopped
                    guest.qmp.command("cont")
                assert time.monotonic() < deadline, f"the guest stayed {status}"
                time.sleep(0.02)
            # The clock is the one it had when saved.
            guest.run(f"date -u -s @{time.time():.3f} >/dev/null", check=True)
        except BaseException:
            guest.close()
            raise
        return guest

    def run(
        self, command: str, *, stdin: bytes = b"", timeout: float = 180, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """A shell command as root in the guest."""
        done = subprocess.run(
            [*self._ssh(), "root@127.0.0.1", "--", command],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        result = subprocess.CompletedProcess(
            done.args,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the guest: {command}\nexit {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return result

    def wait_for(self, what: str, command: str, timeout: float = 180) -> str:
        """Run command until it succeeds; its output."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.run(command, timeout=timeout)
            if done.returncode == 0:
                return done.stdout
            assert time.monotonic() < deadline, f"{what}: {done.stdout}{done.stderr}"
            time.sleep(2)

    def save(self, name: str) -> None:
        """Save this guest as snapshot NAME, and stop it."""
        disk, state = self.snapshot(self.cache, name)
        self._close_ssh()
        self.qmp.command("stop")
        partial = state.with_suffix(".partial")
        self.qmp.command("migrate", uri=f"exec:cat > {shlex.quote(str(partial))}")
        while (status := self.qmp.command("query-migrate").get("status")) != "completed":
            assert status not in ("failed", "cancelled"), f"saving the guest: {status}"
            time.sleep(0.05)
        self.qmp.command("quit")
        self.process.wait(30)
        shutil.move(self.disk, disk)
        disk.chmod(0o444)  # frozen: the saved memory belongs to exactly this disk
        partial.rename(state)

    def close(self) -> None:
        if self.process.poll() is not None:
            return
        self._close_ssh()
        try:
            self.qmp.command("quit")
            self.process.wait(10)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _ssh(self) -> list[str]:
        keys = self.cache / "ssh"
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(keys / "id_ed25519"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={keys / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self._control}",
            "-o",
            "ControlPersist=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "LogLevel=ERROR",
            "-p",
            str(self.ssh_port),
        ]

    def _close_ssh(self) -> None:
        subprocess.run(
            [*self._ssh(), "-O", "exit", "root@127.0.0.1"],
            capture_output=True,
            timeout=10,
            check=False,
        )


def boot_and_save(cache: Path, workdir: Path) -> None:
    """Boot rootfs.ext4 once, wait until systemd says running, save it as the boot snapshot."""
    disk, _ = Guest.snapshot(cache, BOOT)
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(cache / "rootfs.ext4"),
            str(workdir / "disk.qcow2"),
        ],
        check=True,
    )
    guest = Guest(cache, workdir, workdir / "disk.qcow2")
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if guest.run("true", timeout=20).returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            assert guest.process.poll() is None, (workdir / "qemu.out").read_text()
            assert time.monotonic() < deadline, "the guest never answered ssh"
            time.sleep(0.5)
        state = guest.run("timeout 240 systemctl is-system-running --wait", timeout=300)
        assert state.stdout.strip() == "running", guest.run("systemctl --failed").stdout
        guest.run("sync; echo 3 > /proc/sys/vm/drop_caches")  # a smaller saved state
        guest.save(BOOT)
    finally:
        guest.close()
    assert disk.exists()
