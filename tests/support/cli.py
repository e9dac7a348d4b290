"""The firebreak command as a sysadmin runs it: a real process, its output and exit code."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path


def firebreak(
    config: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firebreak", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def on_a_terminal(
    config: Path, *args: str, timeout: float = 180, columns: int = 160
) -> subprocess.CompletedProcess[str]:
    """The command with a pseudo-terminal, as a sysadmin's shell gives it (script(1)): its
    bars and spinners, and stderr merged into stdout, as on the screen."""
    command = shlex.join([sys.executable, "-m", "firebreak", "-c", str(config), *args])
    return subprocess.run(
        ["script", "-qefc", command, "/dev/null"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": str(columns), "TERM": "xterm"},
    )
