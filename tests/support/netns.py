"""A site behind a link the test controls: a network namespace of the test's own, joined to
this one by a veth pair on a private /30. nftables in the namespace drops the site's traffic
(a blackhole, before connecting or in the middle of a transfer); tc tbf on the link slows it.

Nothing leaves the machine: the far end of the link is the namespace, which has no other
interface. Needs root; without it (or without ip, nft, tc) the fixture skips.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import RestServer

# Private /30s are taken from here, at random; a taken one is never reused while it exists.
_BLOCK = (10 << 24) | (213 << 16)
_TABLE = "firebreak_test"


def _quad(value: int) -> str:
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _taken_addresses() -> str:
    return subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout


class Link:
    """The namespace and the veth pair to it; ``far`` is the namespace's address."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.namespace = f"firebreak-{tag}"
        self.host_side = f"fbh{tag}"
        self.far_side = f"fbn{tag}"
        taken = _taken_addresses()
        while True:
            base = _BLOCK | (int(uuid.uuid4().hex[:4], 16) % 16384) * 4
            self.near, self.far = _quad(base + 1), _quad(base + 2)
            if f" {self.near}/" not in taken and f" {self.far}/" not in taken:
                break

    def create(self) -> None:
        _ip("netns", "add", self.namespace)
        try:
            _ip("link", "add", self.host_side, "type", "veth", "peer", "name", self.far_side)
            _ip("link", "set", self.far_side, "netns", self.namespace)
            _ip("addr", "add", f"{self.near}/30", "dev", self.host_side)
            _ip("link", "set", self.host_side, "up")
            inside = ("-n", self.namespace)
            _ip(*inside, "addr", "add", f"{self.far}/30", "dev", self.far_side)
            _ip(*inside, "link", "set", self.far_side, "up")
            _ip(*inside, "link", "set", "lo", "up")
            self._nft(
                f"add table inet {_TABLE}",
                f"add chain inet {_TABLE} input {{ type filter hook input priority 0; }}",
            )
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        """Remove the namespace; the veth pair goes with it."""
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.host_side], capture_output=True)

    def inside(self, argv: list[str]) -> list[str]:
        """argv run in the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def blackhole(self) -> None:
        """Drop every packet that reaches the namespace: no answer, no reset, nothing."""
        self._nft(f"add rule inet {_TABLE} input ip saddr {self.near} drop")

    def heal(self) -> None:
        self._nft(f"flush chain inet {_TABLE} input")

    def slow(self, rate: str) -> None:
        """Uploads to the namespace pass a token bucket of this rate (e.g. "4mbit")."""
        bucket = ["tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"]
        subprocess.run(
            ["tc", "qdisc", "replace", "dev", self.host_side, "root", *bucket], check=True
        )

    def _nft(self, *commands: str) -> None:
        script = "".join(f"{command}\n" for command in commands)
        subprocess.run(self.inside(["nft", "-f", "-"]), input=script, text=True, check=True)


class FarRestServer(RestServer):
    """``rclone serve restic`` in the link's namespace, at its far address."""

    kind = "far-rest-server"

    def __init__(self, link: Link, root: Path, *, log_path: Path | None = None) -> None:
        super().__init__(root, log_path=log_path, host=link.far)
        self.link = link

    def _command(self) -> list[str]:
        return self.link.inside(super()._command())


@pytest.fixture(name="far_rest_server")
def far_rest_server_fixture(tmp_path: Path) -> Iterator[FarRestServer]:
    """A REST site across a link of its own (see Link): blackhole it, heal it, slow it."""
    missing = [tool for tool in ("ip", "nft", "tc", "rclone") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    link = Link()
    try:
        link.create()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a network namespace here: {exc}")
    server = FarRestServer(link, tmp_path / "far-root", log_path=tmp_path / "far-rclone.log")
    try:
        server.start()
        yield server
    finally:
        server.close()
        link.delete()
