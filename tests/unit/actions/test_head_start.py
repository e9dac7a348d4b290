"""A restore's restic started ahead: taken over only by the run that would start the same
one, stopped and cleaned away otherwise, and never started on a doubtful answer."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from firebreak.actions.head_start import ASK_SECONDS, HeadStart, head_start, staging_for
from firebreak.config import Config
from firebreak.daemon.control import SOCKET_NAME, ControlServer
from firebreak.restic import runner
from firebreak.restic.runner import Invocation
from tests.support.setup import Setup


def _sleeping() -> Invocation:
    """A process that runs until it is stopped, standing in for restic."""
    return Invocation(argv=("sleep", "60"), env={"PATH": os.environ["PATH"]}, password="pw")


@pytest.fixture
def head(tmp_path: Path) -> Iterator[HeadStart]:
    staging = tmp_path / ".restored.firebreak-a"
    staging.mkdir()
    (staging / "half-written").write_text("...")
    invocation = _sleeping()
    started = HeadStart("a", invocation, runner.start(invocation), staging)
    yield started
    runner.discard(started.process, 0)


def test_the_run_that_would_start_the_same_restic_takes_it_over(head: HeadStart) -> None:
    assert head.adopt("a", _sleeping()) is head.process
    head.discard()  # the run owns it now
    assert head.process.poll() is None
    assert (head.staging / "half-written").exists()
    assert head.adopt("a", _sleeping()) is None  # once


@pytest.mark.parametrize(
    ("site", "changed"),
    [
        ("b", {}),
        ("a", {"argv": ("sleep", "61")}),
        ("a", {"password": "another"}),
        ("a", {"env": {"PATH": os.environ["PATH"], "RESTIC_COMPRESSION": "max"}}),
    ],
)
def test_any_other_run_has_it_stopped_and_its_files_removed(
    head: HeadStart, site: str, changed: dict[str, Any]
) -> None:
    wanted = replace(_sleeping(), **changed)

    assert head.adopt(site, wanted) is None

    assert head.process.returncode is not None  # stopped and reaped
    assert not head.staging.exists()
    assert head.adopt("a", _sleeping()) is None


def test_the_staging_directory_is_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "restored"
    assert staging_for(target, "b") == tmp_path / ".restored.firebreak-b"


@pytest.mark.parametrize(
    "answer",
    [
        {"site": "nowhere", "snapshot": "0123abcd"},  # not one of the source's sites
        {"site": "b", "snapshot": "0123abcd"},  # not the site asked for
        {"site": "a", "snapshot": None},  # nothing recorded there
        {"site": "a", "snapshot": "--target=/etc"},  # not a snapshot id
    ],
)
def test_a_doubtful_answer_starts_nothing(tmp_path: Path, answer: dict[str, Any]) -> None:
    config = _config(tmp_path)
    target = tmp_path / "restored"
    with _daemon(config, answer):
        assert head_start(config, "www", "a", target, ()) is None
    assert list(tmp_path.glob(".restored*")) == []


def test_no_daemon_or_no_restic_starts_nothing(tmp_path: Path) -> None:
    setup = Setup(tmp_path, restic=str(tmp_path / "no-such-restic"))
    _sites(setup)
    config = setup.load()
    target = tmp_path / "restored"
    assert head_start(config, "www", None, target, ()) is None  # nobody listens
    with _daemon(config, {"site": "a", "snapshot": "0123abcd"}):
        assert head_start(config, "www", None, target, ()) is None
    assert list(tmp_path.glob(".restored*")) == []


def test_a_hung_daemon_holds_the_restore_up_a_second_at_most(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config.state_dir.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:
        hung.bind(str(config.state_dir / SOCKET_NAME))
        hung.listen(1)  # takes the connection in the kernel, never answers
        began = time.monotonic()
        assert head_start(config, "www", None, tmp_path / "restored", ()) is None
        waited = time.monotonic() - began
    assert ASK_SECONDS <= waited < ASK_SECONDS + 0.5  # not the 5 s status would wait


def _sites(setup: Setup) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])


def _config(tmp_path: Path) -> Config:
    setup = Setup(tmp_path)
    _sites(setup)
    return setup.load()


@contextmanager
def _daemon(config: Config, answer: dict[str, Any]) -> Iterator[None]:
    """A control socket that answers every restore question with answer."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    server = ControlServer(
        config.state_dir, lambda: config.fingerprint, lambda: {}, restore=lambda _: answer
    )
    server.start()
    try:
        yield
    finally:
        server.close()
