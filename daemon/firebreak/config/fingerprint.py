"""Which config file a daemon runs with, told without building the model.

``firebreak status`` asks the running daemon only when the file it was given is the one the
daemon loaded: the same resolved path (relative paths in it resolve from its folder) and the
same bytes. Anything else, and status reads the history itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/firebreak")


def fingerprint(path: Path, raw: bytes) -> str:
    """The file's resolved path and its bytes, hashed."""
    digest = hashlib.sha256(str(path.resolve()).encode() + b"\0")
    digest.update(raw)
    return digest.hexdigest()


def state_dir_of(data: object, base_dir: Path) -> Path | None:
    """state_dir as the model reads it, from the file's parsed YAML (default, ``~``, relative
    to the file's folder); None when the file is not a mapping or state_dir not plain text,
    which only the model can judge."""
    if not isinstance(data, dict):
        return None
    given = data.get("state_dir", str(DEFAULT_STATE_DIR))
    if not isinstance(given, str) or not given:
        return None
    path = Path(given).expanduser()
    return path if path.is_absolute() else base_dir / path
