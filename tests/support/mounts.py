"""Real filesystems for fault and placement tests: a small tmpfs (a separate disk, or a full
one), a bind mount, and one ext4 image mounted in two places."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(args: list[str], what: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount {what} here: {done.stderr.decode().strip()}")


@contextmanager
def bind_mount(source: Path, path: Path) -> Iterator[Path]:
    """source mounted again at path (created): one filesystem, two places."""
    path.mkdir(parents=True)
    _mount(["--bind", str(source), str(path)], "a bind mount")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def one_disk_twice(image: Path, first: Path, second: Path) -> Iterator[tuple[Path, Path]]:
    """A small ext4 image, mounted (through one loop device) at first and at second."""
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    _mount(["-o", "loop", str(image), str(first)], "a loop device")
    try:
        _mount(["-o", "loop", str(image), str(second)], "a loop device twice")
        try:
            yield first, second
        finally:
            subprocess.run(["umount", "-l", str(second)], check=False)
    finally:
        subprocess.run(["umount", "-l", str(first)], check=False)


@contextmanager
def tmpfs(path: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of this size mounted at path (created), unmounted after; skips without root."""
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "firebreak-test", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


class Disk:
    """A small ext4 image that can be unmounted and mounted again with its data, as a backup
    disk that someone forgot to mount (or that failed to mount at boot)."""

    def __init__(self, image: Path, path: Path) -> None:
        self.image = image
        self.path = path
        subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        path.mkdir(parents=True)
        self.mounted = False

    def mount(self) -> None:
        _mount(["-o", "loop", str(self.image), str(self.path)], "a loop device")
        self.mounted = True

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)
        self.mounted = False

    def __enter__(self) -> Disk:
        self.mount()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
