"""A real Debian 12 guest with systemd as PID 1, with firebreak installed in it as
docs/install.md says. Built once and kept outside the repository (FIREBREAK_GUEST_CACHE,
default /var/cache/firebreak-tests): about 3 minutes the first time, then a restore per test.

``make test-systemd`` runs these alone; ``make test`` runs them with the rest.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.guest import BOOT, Guest, boot_and_save

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(__file__).with_name("build-guest.sh")
CACHE_BASE = Path(os.environ.get("FIREBREAK_GUEST_CACHE", "/var/cache/firebreak-tests"))
TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "socat", "ssh", "mkfs.ext4")


@pytest.fixture(scope="session")
def guest_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache directory of the built, booted and saved guest."""
    if os.geteuid() != 0:
        pytest.skip("the systemd guest is built with debootstrap and chroot: run as root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"missing {', '.join(missing)}: make deps installs them"
    # A new build script or new dependencies make a new image; older ones are removed.
    key = hashlib.sha256(BUILD.read_bytes() + _dependencies()).hexdigest()[:12]
    cache = CACHE_BASE / f"guest-{key}"
    with _one_at_a_time("guest"):
        for old in CACHE_BASE.glob("guest-*"):
            if old != cache:
                shutil.rmtree(old, ignore_errors=True)
        built = subprocess.run(
            [str(BUILD), str(cache)], capture_output=True, text=True, timeout=1200, check=False
        )
        assert built.returncode == 0, f"building the guest failed:\n{built.stdout}{built.stderr}"
        if not Guest.snapshot(cache, BOOT)[1].exists():
            boot_and_save(cache, tmp_path_factory.mktemp("boot"))
    return cache


@contextmanager
def _one_at_a_time(what: str) -> Iterator[None]:
    """Test workers (pytest-xdist) share the cache: one builds while the others wait, then
    find it built."""
    CACHE_BASE.mkdir(parents=True, exist_ok=True)
    with (CACHE_BASE / f".{what}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def installed(guest_image: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The snapshot of a guest where docs/install.md's first section ran on this source tree."""
    tree = _source_tree()
    name = f"installed-{hashlib.sha256(tree).hexdigest()[:12]}"
    with _one_at_a_time("installed"):
        if Guest.snapshot(guest_image, name)[1].exists():
            return name
        for old in guest_image.glob("installed-*"):
            old.unlink(missing_ok=True)
        guest = Guest.restore(guest_image, tmp_path_factory.mktemp("install"))
        try:
            # In place of `git clone`: this checkout, uncommitted changes included.
            guest.run(
                "mkdir -p /usr/local/src/firebreak && tar -x -C /usr/local/src/firebreak",
                stdin=tree,
                check=True,
            )
            steps = [line for line in install_md_block("## 1.") if not line.startswith("git clone")]
            guest.run("set -e\n" + "\n".join(steps), timeout=900, check=True)
            guest.save(name)
        finally:
            guest.close()
    return name


@pytest.fixture
def new_guest(
    guest_image: Path, installed: str, tmp_path: Path
) -> Iterator[Callable[[dict[str, int]], Guest]]:
    """Makes a fresh copy of the installed guest, whose 10.0.2.10N:8000 reach the host's
    loopback ports given ({"10.0.2.100:8000": port}); every copy is stopped afterwards."""
    made: list[Guest] = []

    def make(forwards: dict[str, int]) -> Guest:
        workdir = tmp_path / f"guest{len(made)}"
        workdir.mkdir()
        made.append(Guest.restore(guest_image, workdir, installed, forwards=forwards))
        return made[-1]

    try:
        yield make
    finally:
        for guest in made:
            guest.close()


def install_md_block(heading: str, holding: str = "") -> list[str]:
    """The shell lines of the first ```sh block under the install.md heading that starts
    with heading (and holds the text holding); a line continued with a backslash is one."""
    text = (ROOT / "docs" / "install.md").read_text()
    section = text[text.index(f"\n{heading}") :]
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", section, re.DOTALL) if holding in b]
    assert blocks, f"no sh block under {heading} in docs/install.md"
    joined = blocks[0].replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip()]


def _source_tree() -> bytes:
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    present = b"\0".join(
        name for name in files.split(b"\0") if name and (ROOT / name.decode()).exists()
    )
    return subprocess.run(
        [
            "tar",
            "-C",
            str(ROOT),
            "--null",
            "-T",
            "-",
            "-c",
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
        ],
        input=present,
        check=True,
        capture_output=True,
    ).stdout


def _dependencies() -> bytes:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = (
        project["project"]["dependencies"]
        + project["project"]["optional-dependencies"]["postgresql"]
    )
    return "\n".join(wanted).encode()
