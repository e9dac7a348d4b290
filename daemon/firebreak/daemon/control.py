"""The daemon's control socket, STATE_DIR/control.sock: ``firebreak status`` asks the running
daemon, which has the history open and the config model built, instead of building both
itself (about half a second of imports for a command that should answer at once).

One question per connection, one JSON line each way::

    → {"ask": "status", "config": FINGERPRINT}
    ← {"status": DOCUMENT}        (daemon/overview.py's document, as status --json prints it)
    ← {"refused": WHY}

The daemon answers only for the config file it loaded (config/fingerprint.py: the same path
and the same bytes), so an edited file not yet reloaded, or another file naming the same
state_dir, is answered by status itself. Only the daemon's own user and root may ask: the
socket is 0600 and each caller's credentials are checked. This module imports nothing of
firebreak's beyond the standard library: the CLI's side must stay light.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
# How long either side waits for the other: a daemon that does not answer in this time is
# busy or hung, and status reads the history itself.
ASK_SECONDS = 5.0
MAX_QUESTION = 4096
# AF_UNIX paths longer than this (108 bytes with the terminator on Linux) are reached
# through a descriptor of their folder.
_MAX_PATH = 100


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A path bind() and connect() take: the path itself, or for a long one the same socket
    through /proc/self/fd and a descriptor of its folder, open while the block runs."""
    if len(os.fsencode(path)) <= _MAX_PATH:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


class ControlServer:
    """Answers status questions on STATE_DIR/control.sock, a thread per caller."""

    def __init__(
        self,
        state_dir: Path,
        fingerprint: Callable[[], str | None],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.path = state_dir / SOCKET_NAME
        self._fingerprint = fingerprint
        self._status = status
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def start(self) -> None:
        """Listen; a socket left by a daemon that died is replaced. Raises OSError."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _address(self.path) as address:
                listener.bind(address)
            self.path.chmod(0o600)
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        self._socket = listener
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=ASK_SECONDS)
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _accept(self) -> None:
        assert self._socket is not None
        while not self._closing.is_set():
            try:
                caller, _ = self._socket.accept()
            except OSError:
                if self._closing.is_set():
                    return
                continue
            threading.Thread(
                target=self._serve, args=(caller,), name="control-caller", daemon=True
            ).start()

    def _serve(self, caller: socket.socket) -> None:
        with caller:
            caller.settimeout(ASK_SECONDS)
            try:
                answer = self._answer(caller)
                caller.sendall(json.dumps(answer).encode() + b"\n")
            except OSError as exc:
                log.debug("control socket: a caller went away: %s", exc)

    def _answer(self, caller: socket.socket) -> dict[str, Any]:
        uid = _peer_uid(caller)
        if uid not in (0, os.getuid()):
            log.warning("control socket: refused a caller running as uid %d", uid)
            return {"refused": "not this daemon's user"}
        question = _read_line(caller, MAX_QUESTION)
        try:
            asked = json.loads(question)
        except ValueError:
            return {"refused": "not a JSON question"}
        if not isinstance(asked, dict) or asked.get("ask") != "status":
            return {"refused": "the only question is status"}
        if asked.get("config") is None or asked.get("config") != self._fingerprint():
            return {"refused": "this daemon runs another config (or another version of it)"}
        try:
            return {"status": self._status()}
        except Exception as exc:  # the history is down, or worse: status says it itself
            log.warning("control socket: status could not be read: %s", type(exc).__name__)
            return {"refused": "the daemon could not read the history"}


def _peer_uid(caller: socket.socket) -> int:
    size = struct.calcsize("3i")
    _pid, uid, _gid = struct.unpack(
        "3i", caller.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    )
    return int(uid)


def _read_line(caller: socket.socket, limit: int) -> bytes:
    """Up to the first newline, the end, or limit bytes."""
    got = b""
    while b"\n" not in got and len(got) < limit:
        chunk = caller.recv(limit - len(got))
        if not chunk:
            break
        got += chunk
    return got.split(b"\n", 1)[0]


def ask_status(state_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The running daemon's status document for the config with this fingerprint, or None:
    no daemon listens, it runs another config, it refused, or it did not answer in time."""
    path = state_dir / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as daemon:
            daemon.settimeout(ASK_SECONDS)
            with _address(path) as address:
                daemon.connect(address)
            daemon.sendall(json.dumps({"ask": "status", "config": fingerprint}).encode() + b"\n")
            chunks = []
            while chunk := daemon.recv(1 << 16):
                chunks.append(chunk)
    except OSError as exc:
        log.debug("no answer on %s: %s", path, exc)
        return None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        log.debug("no answer on %s: not JSON", path)
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), dict):
        log.debug("the daemon on %s did not answer: %s", path, answer)
        return None
    status: dict[str, Any] = answer["status"]
    return status
