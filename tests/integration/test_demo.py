"""`make demo`'s script works from scratch (its one-cycle form; the daemon form runs forever)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone is not installed")
def test_demo_backs_up_to_three_sites_and_shows_status(tmp_path: Path) -> None:
    firebreak = tmp_path / "firebreak"
    firebreak.write_text(f'#!/bin/sh\nexec {sys.executable} -m firebreak "$@"\n')
    firebreak.chmod(0o755)
    env = dict(
        os.environ,
        DEMO_DIR=str(tmp_path / "demo"),
        FIREBREAK=str(firebreak),
        DEMO_REST_PORT=str(free_port()),
    )
    script = str(ROOT / "deploy" / "demo" / "run-demo.sh")
    try:
        done = subprocess.run(
            ["bash", script, "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        subprocess.run(["bash", script, "--stop"], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING: placement policy is in warn mode" in done.stdout
    assert "sample: success (3 of 3 sites" in done.stdout
    assert "every source is safe (1 source)" in done.stdout
    assert sorted(p.name for p in (tmp_path / "demo" / "sites").iterdir()) == [
        "frankfurt-rest",
        "london",
        "paris",
    ]
