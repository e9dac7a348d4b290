"""A seeded dataset for ``make bench``: the same files, byte for byte, for the same seed.

The default is about 1 GiB, shaped like a server's data: 20 000 small files of 1 to 64 KiB
in 100 directories, and six large files of 64 MiB. Every file is half random bytes and half
text, so restic's compression has something to do but not everything. ``small=True`` is the
same shape at about 20 MiB, for the smoke run in ``make test``.

``change`` makes the next round's incremental: it rewrites one file in twenty of the small
ones and 1 MiB in the middle of one large file, from the seed and the round, so every tool
measured in that round backs up the same change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

SEED = 1729
KIB = 1024
MIB = 1024 * KIB
# Text that compresses: restic (repository format 2) compresses with zstd.
TEXT = b"".join(
    f"{index:08} firebreak keeps three copies in three places, and proves it\n".encode()
    for index in range(16384)
)


@dataclass(frozen=True)
class Shape:
    small_files: int
    large_files: int
    large_size: int


FULL = Shape(small_files=20_000, large_files=6, large_size=64 * MIB)
SMALL = Shape(small_files=400, large_files=2, large_size=4 * MIB)


@dataclass(frozen=True)
class Dataset:
    root: Path
    shape: Shape
    seed: int

    @property
    def files(self) -> int:
        return self.shape.small_files + self.shape.large_files

    @property
    def size(self) -> int:
        return sum(path.stat().st_size for path in self.root.rglob("*") if path.is_file())

    def describe(self) -> str:
        return (
            f"{self.size / MIB:.0f} MiB in {self.files} files "
            f"({self.shape.small_files} of 1-64 KiB, {self.shape.large_files} of "
            f"{self.shape.large_size // MIB} MiB), seed {self.seed}"
        )

    def change(self, round_: int) -> None:
        """Rewrite one small file in twenty and 1 MiB in the middle of one large file."""
        rng = random.Random(f"{self.seed}/change/{round_}")
        for index in range(rng.randrange(20), self.shape.small_files, 20):
            path = _small_path(self.root, index)
            path.write_bytes(_content(rng, path.stat().st_size))
        large = self.root / "large" / f"{rng.randrange(self.shape.large_files):02}.bin"
        with large.open("r+b") as file:
            file.seek(self.shape.large_size // 2)
            file.write(_content(rng, min(MIB, self.shape.large_size // 2)))


def generate(root: Path, *, small: bool = False, seed: int = SEED) -> Dataset:
    """Write the dataset under root (which must not exist yet)."""
    shape = SMALL if small else FULL
    rng = random.Random(seed)
    for index in range(shape.small_files):
        path = _small_path(root, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_content(rng, rng.randint(KIB, 64 * KIB)))
    (root / "large").mkdir(parents=True)
    for index in range(shape.large_files):
        with (root / "large" / f"{index:02}.bin").open("wb") as file:
            for _ in range(0, shape.large_size, MIB):
                file.write(_content(rng, MIB))
    return Dataset(root, shape, seed)


def _small_path(root: Path, index: int) -> Path:
    return root / "small" / f"{index % 100:02}" / f"{index:05}.dat"


def _content(rng: random.Random, size: int) -> bytes:
    """size bytes: half random, half text from a random place in TEXT."""
    text = size - size // 2
    start = rng.randrange(len(TEXT) - text)
    return rng.randbytes(size // 2) + TEXT[start : start + text]
