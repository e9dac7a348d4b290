"""The daemon's control socket on its own: who gets an answer, and when status must read the
history itself instead."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firebreak.daemon import control
from firebreak.daemon.control import (
    SOCKET_NAME,
    Accepted,
    Asking,
    Backup,
    Caller,
    ControlServer,
    ask,
    ask_status,
)

DOCUMENT = {"generated_at": "2026-12-04T10:00:00+00:00", "sources": []}


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[ControlServer]:
    server = ControlServer(tmp_path, lambda: "this-config", lambda: DOCUMENT)
    server.start()
    yield server
    server.close()


def test_the_daemon_answers_for_its_own_config_only(serving: ControlServer) -> None:
    assert ask_status(serving.path.parent, "this-config") == DOCUMENT
    assert ask_status(serving.path.parent, "an-edited-config") is None
    assert stat.S_IMODE(serving.path.stat().st_mode) == 0o600


def test_no_daemon_a_dead_ones_socket_and_a_closed_one_answer_nothing(tmp_path: Path) -> None:
    assert ask_status(tmp_path, "this-config") is None  # no socket at all
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / SOCKET_NAME))
    dead.close()  # what SIGKILL leaves: the file, nobody listening
    assert ask_status(tmp_path, "this-config") is None
    server = ControlServer(tmp_path, lambda: "this-config", lambda: DOCUMENT)
    server.start()  # the next daemon replaces it
    assert ask_status(tmp_path, "this-config") == DOCUMENT
    server.close()
    assert not (tmp_path / SOCKET_NAME).exists()
    assert ask_status(tmp_path, "this-config") is None


def test_a_history_the_daemon_cannot_read_is_left_to_status(tmp_path: Path) -> None:
    def broken() -> dict[str, Any]:
        raise OSError("database is locked")

    server = ControlServer(tmp_path, lambda: "this-config", broken)
    server.start()
    try:
        assert ask_status(tmp_path, "this-config") is None
    finally:
        server.close()


def test_a_daemon_loaded_from_text_answers_nobody(tmp_path: Path) -> None:
    server = ControlServer(tmp_path, lambda: None, lambda: DOCUMENT)
    server.start()
    try:
        assert ask_status(tmp_path, "None") is None
        assert _ask(tmp_path, b'{"ask": "status", "config": null}\n') == {
            "refused": "this daemon runs another config (or another version of it)"
        }
    finally:
        server.close()


def test_odd_questions_are_refused_and_the_daemon_goes_on(serving: ControlServer) -> None:
    folder = serving.path.parent
    assert _ask(folder, b"restart\n") == {"refused": "not a JSON question"}
    assert _ask(folder, b'{"ask": "stop"}\n') == {"refused": "the questions are status"}
    assert "refused" in _ask(folder, b"x" * control.MAX_QUESTION)  # no newline, all it reads
    assert ask_status(folder, "this-config") == DOCUMENT


def test_a_restore_asks_where_it_starts_and_a_daemon_that_cannot_say_is_left_to_it(
    tmp_path: Path,
) -> None:
    asked: list[dict[str, Any]] = []

    def where(question: dict[str, Any]) -> dict[str, Any] | str:
        asked.append(question)
        if question["source"] == "gone":
            return "a source or site this config does not have"
        if question["source"] == "broken":
            raise OSError("database is locked")
        return {"site": "a", "snapshot": "0123abcd"}

    server = ControlServer(tmp_path, lambda: "this-config", lambda: DOCUMENT, restore=where)
    server.start()
    try:

        def question(source: str, config: str = "this-config") -> dict[str, Any]:
            return {"ask": "restore", "config": config, "source": source, "site": None}

        assert ask(tmp_path, question("www"), "restore") == {"site": "a", "snapshot": "0123abcd"}
        assert ask(tmp_path, question("gone"), "restore") is None
        assert ask(tmp_path, question("broken"), "restore") is None
        assert ask(tmp_path, question("www", "an-edited-config"), "restore") is None
        assert [q["source"] for q in asked] == ["www", "gone", "broken"]
        assert _ask(tmp_path, b'{"ask": "stop"}\n') == {
            "refused": "the questions are status, restore"
        }
    finally:
        server.close()


def test_a_deep_state_dir_is_reached_past_the_socket_path_limit(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(deep / SOCKET_NAME)) > 108
    server = ControlServer(deep, lambda: "this-config", lambda: DOCUMENT)
    server.start()
    try:
        assert ask_status(deep, "this-config") == DOCUMENT
    finally:
        server.close()
    assert not (deep / SOCKET_NAME).exists()


def test_a_daemon_that_does_not_answer_is_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "ASK_SECONDS", 0.3)
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(tmp_path / SOCKET_NAME))
    hung.listen(1)  # accepts the connection in the kernel, never answers
    answered: list[object] = []
    asking = threading.Thread(target=lambda: answered.append(ask_status(tmp_path, "x")))
    asking.start()
    asking.join(timeout=5)
    hung.close()
    assert not asking.is_alive()
    assert answered == [None]


def _ask(folder: Path, question: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as daemon:
        daemon.settimeout(5)
        daemon.connect(str(folder / SOCKET_NAME))
        daemon.sendall(question)
        daemon.shutdown(socket.SHUT_WR)
        answer: dict[str, Any] = json.loads(daemon.makefile("rb").read())
        return answer


def _backing_up(ran: list[str], until: threading.Event | None = None) -> Backup:
    """A daemon's backup work: accepted with a line to print; its run notes that it ran,
    waits for the caller to stop it (or until), and says how it ended."""

    def backup(asked: dict[str, Any]) -> Accepted | str:
        if asked.get("sources") == ["nosuch"]:
            return "a source or site this config does not have"

        def run(caller: Caller) -> None:
            ran.append("ran")
            caller.progress("www", "a", {"bytes_done": 1})
            while until is not None and not until.is_set() and not caller.cancel.wait(0.05):
                pass
            caller.say({"reports": [], "interrupted": caller.cancel.is_set()})

        return Accepted([(False, "a note")], run)

    return backup


def _serving_backups(folder: Path, backup: Backup, stopping: threading.Event) -> ControlServer:
    server = ControlServer(folder, lambda: "this-config", lambda: DOCUMENT, backup, stopping)
    server.start()
    return server


QUESTION = {"ask": "backup", "config": "this-config", "sources": ["www"], "sites": []}


def test_a_backup_runs_only_once_the_caller_says_go(tmp_path: Path) -> None:
    ran: list[str] = []
    server = _serving_backups(tmp_path, _backing_up(ran), threading.Event())
    try:
        with Asking(tmp_path, QUESTION) as asking:
            assert asking.first() == {"accepted": {"said": [[False, "a note"]]}}
        # The caller gave up (it runs the backup itself): the daemon must not run it too.
        with Asking(tmp_path, {**QUESTION, "sources": ["nosuch"]}) as asking:
            assert asking.first() == {"refused": "a source or site this config does not have"}
        with Asking(tmp_path, QUESTION) as asking:
            assert "accepted" in (asking.first() or {})
            asking.go()
            said = list(asking.rest())
        assert said[-1] == {"reports": [], "interrupted": False}
        assert {"progress": ["www", "a", {"bytes_done": 1}]} in said
    finally:
        server.close()
    assert ran == ["ran"]


def test_a_caller_stops_its_backup_and_hears_how_it_ended(tmp_path: Path) -> None:
    ran: list[str] = []
    never = threading.Event()
    server = _serving_backups(tmp_path, _backing_up(ran, never), threading.Event())
    try:
        with Asking(tmp_path, QUESTION) as asking:
            assert "accepted" in (asking.first() or {})
            asking.go()
            asking.stop()
            said = list(asking.rest())
        assert said[-1] == {"reports": [], "interrupted": True}
    finally:
        server.close()


def test_a_stopping_daemon_takes_no_backup_and_stops_the_one_it_runs(tmp_path: Path) -> None:
    ran: list[str] = []
    stopping = threading.Event()
    server = _serving_backups(tmp_path, _backing_up(ran, threading.Event()), stopping)
    try:
        with Asking(tmp_path, QUESTION) as asking:
            assert "accepted" in (asking.first() or {})
            asking.go()
            stopping.set()
            said = list(asking.rest())
        assert said[-1] == {"reports": [], "interrupted": True}
        with Asking(tmp_path, QUESTION) as asking:
            assert asking.first() == {"refused": "the daemon is stopping"}
    finally:
        server.close()
    assert ran == ["ran"]
