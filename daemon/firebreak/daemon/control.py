"""The daemon's control socket, STATE_DIR/control.sock: ``firebreak status``, ``backup`` and
``restore`` ask the running daemon, which has the history open and the config model built,
instead of building both themselves (about half a second of imports).

One question per connection, a JSON line; the answers are JSON lines too::

    → {"ask": "status", "config": FINGERPRINT}
    ← {"status": DOCUMENT}        (daemon/overview.py's document, as status --json prints it)

    → {"ask": "restore", "config": FINGERPRINT, "source": SOURCE, "site": SITE or null}
    ← {"restore": {"site": FIRST_SITE, "snapshot": SHORT_ID or null}}
                                  (the site a restore tries first, and the newest snapshot
                                   the history recorded there: actions/head_start.py)

    → {"ask": "backup", "config": FINGERPRINT, "sources": [...], "all": false,
       "sites": [...], "progress": true, "verbose": 1, "where": CONFIG_PATH}
    ← {"accepted": {"said": [[TO_STDERR, LINE], ...]}}
    ← {"progress": [SOURCE, SITE, RESTIC_STATUS]}     (asked for; the newest per site)
    ← {"log": {"name": ..., "level": ..., "message": ..., "created": ...}}   (its log lines)
    ← {"reports": [CYCLE_REPORT, ...], "interrupted": false}   or  {"error": WHY, "code": N}
    → anything, or the end of the connection: stop the backup (Ctrl-C, or the caller died)

    ← {"refused": WHY}            (to any question: the caller then does the work itself)

The daemon answers only for the config file it loaded (config/fingerprint.py: the same path
and the same bytes), so an edited file not yet reloaded, or another file naming the same
state_dir, is answered by the command itself. Only the daemon's own user and root may ask:
the socket is 0600 and each caller's credentials are checked. This module imports nothing of
firebreak's beyond the standard library: the CLI's side must stay light.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
# How long either side waits for the other: a daemon that does not answer in this time is
# busy or hung, and status reads the history itself.
ASK_SECONDS = 5.0
MAX_QUESTION = 4096
# How long the daemon keeps telling a caller that does not read the end of its backup.
FINISH_SECONDS = 60.0
# How long a caller that asked the daemon to stop its backup waits to hear how it ended.
STOP_WAIT_SECONDS = 60.0
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


class Caller:
    """The caller of a long question (a backup), as the work sees it: what to tell it, and
    whether it asked to stop. Progress is kept to the newest per site and sent when the
    caller reads, so that a caller that reads slowly (or is suspended) never holds up
    restic; everything else is sent in order."""

    def __init__(self, connection: socket.socket) -> None:
        self.cancel = threading.Event()  # the caller asked to stop, or went away
        self._connection = connection
        self._said: list[dict[str, Any]] = []
        self._progress: dict[tuple[str, str], dict[str, Any]] = {}
        self._done = False
        self._more = threading.Condition()
        self._sender = threading.Thread(target=self._send_all, name="control-send", daemon=True)
        self._sender.start()

    def say(self, message: dict[str, Any]) -> None:
        with self._more:
            self._said.append(message)
            self._more.notify()

    def progress(self, source: str, site: str, status: dict[str, Any]) -> None:
        with self._more:
            self._progress[(source, site)] = status
            self._more.notify()

    def finish(self) -> None:
        """Send what is left, then stop sending; a caller that has not read it within
        FINISH_SECONDS (suspended, or its output stopped) is cut off."""
        with self._more:
            self._done = True
            self._more.notify()
        self._sender.join(FINISH_SECONDS)
        if self._sender.is_alive():
            with contextlib.suppress(OSError):
                self._connection.shutdown(socket.SHUT_RDWR)
            self._sender.join(ASK_SECONDS)

    def _send_all(self) -> None:
        while True:
            with self._more:
                while not (self._said or self._progress or self._done):
                    self._more.wait()
                said, self._said = self._said, []
                moved, self._progress = self._progress, {}
                done = self._done and not said and not moved
            if done:
                return
            lines = [{"progress": [*where, status]} for where, status in moved.items()] + said
            try:
                self._connection.sendall(b"".join(_line(message) for message in lines))
            except Exception as exc:  # gone (OSError), or a message JSON cannot say
                log.debug("control socket: stopped telling a caller: %r", exc)
                self.cancel.set()
                return


@dataclass(frozen=True)
class Accepted:
    """A backup the daemon takes: the lines the caller prints first (True: on stderr), and
    the work, run once the caller says go, which tells the caller how it ended."""

    said: list[tuple[bool, str]]
    run: Callable[[Caller], None]


# A backup asked for: Accepted, or why not (the caller then runs it itself).
Backup = Callable[[dict[str, Any]], "Accepted | str"]
# Where a restore asked about starts: the answer, or why not.
Restore = Callable[[dict[str, Any]], "dict[str, Any] | str"]

# The caller this thread's log records are also for, and from which level: set while a
# backup asked for runs, and seen by its cycle's site threads too (actions/cycle.py runs them
# in a copy of its context).
_RELAYED: contextvars.ContextVar[tuple[Caller, int] | None] = contextvars.ContextVar(
    "relayed", default=None
)


class _Relay(logging.Handler):
    """Sends what is logged for a caller's backup to that caller, which logs it as its own
    (a site busy, a retry, a warning), as if it had run the backup itself."""

    def emit(self, record: logging.LogRecord) -> None:
        relayed = _RELAYED.get()
        if relayed is None or record.levelno < relayed[1]:
            return
        said = {
            "name": record.name,
            "level": record.levelno,
            "message": record.getMessage(),
            "created": record.created,
        }
        relayed[0].say({"log": said})


@contextlib.contextmanager
def relaying(caller: Caller, verbose: object) -> Iterator[None]:
    """While the block runs, this thread's records (and its cycle's) go to caller too: at
    WARNING, or INFO with -v, DEBUG with -vv (when the daemon logs them)."""
    count = verbose if isinstance(verbose, int) else 0
    level = logging.DEBUG if count > 1 else logging.INFO if count == 1 else logging.WARNING
    token = _RELAYED.set((caller, level))
    try:
        yield
    finally:
        _RELAYED.reset(token)


def relog(said: dict[str, Any]) -> None:
    """Log a record the daemon relayed, as this process's own."""
    created = float(said.get("created", time.time()))
    record = logging.makeLogRecord(
        {
            "name": str(said.get("name", "firebreak")),
            "levelno": int(said.get("level", logging.INFO)),
            "levelname": logging.getLevelName(int(said.get("level", logging.INFO))),
            "msg": str(said.get("message", "")),
            "created": created,
            "msecs": (created - int(created)) * 1000,
        }
    )
    logging.getLogger(record.name).handle(record)


class ControlServer:
    """Answers questions on STATE_DIR/control.sock, a thread per caller."""

    def __init__(
        self,
        state_dir: Path,
        fingerprint: Callable[[], str | None],
        status: Callable[[], dict[str, Any]],
        backup: Backup | None = None,
        stopping: threading.Event | None = None,
        restore: Restore | None = None,
    ) -> None:
        """stopping: set when the daemon stops (a backup asked for stops with it)."""
        self.path = state_dir / SOCKET_NAME
        self._fingerprint = fingerprint
        self._status = status
        self._backup = backup
        self._restore = restore
        self._stopping = stopping or threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._callers: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._relay = _Relay()

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
        logging.getLogger().addHandler(self._relay)
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()

    def stop_listening(self) -> None:
        """No new questions (the daemon is stopping: a command asking now does its work
        itself); callers being answered are still told how their backup ends."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=ASK_SECONDS)
        with contextlib.suppress(OSError):
            self.path.unlink()

    def close(self) -> None:
        """Stop listening; callers still being answered get ASK_SECONDS to be told the end."""
        self.stop_listening()
        logging.getLogger().removeHandler(self._relay)
        with self._lock:
            callers = list(self._callers)
        deadline = time.monotonic() + ASK_SECONDS
        for thread in callers:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _accept(self) -> None:
        assert self._socket is not None
        while not self._closing.is_set():
            try:
                caller, _ = self._socket.accept()
            except OSError as exc:
                if self._closing.is_set():
                    return
                log.warning("control socket: %s", exc.strerror or exc)
                self._closing.wait(1.0)  # out of descriptors, say: not a busy loop
                continue
            thread = threading.Thread(
                target=self._serve, args=(caller,), name="control-caller", daemon=True
            )
            with self._lock:
                self._callers.add(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection:
                connection.settimeout(ASK_SECONDS)
                try:
                    self._answer(connection)
                except OSError as exc:
                    log.debug("control socket: a caller went away: %s", exc)
        finally:
            with self._lock:
                self._callers.discard(threading.current_thread())

    def _answer(self, connection: socket.socket) -> None:
        uid = _peer_uid(connection)
        if uid not in (0, os.getuid()):
            log.warning("control socket: refused a caller running as uid %d", uid)
            connection.sendall(_line({"refused": "not this daemon's user"}))
            return
        question, _ = _read_line(connection, MAX_QUESTION)
        try:
            asked = json.loads(question)
        except ValueError:
            asked = None
        known = [
            "status",
            *(["backup"] if self._backup else []),
            *(["restore"] if self._restore else []),
        ]
        if not isinstance(asked, dict):
            refused = "not a JSON question"
        elif asked.get("ask") not in known:
            refused = f"the questions are {', '.join(known)}"
        elif asked.get("config") is None or asked.get("config") != self._fingerprint():
            refused = "this daemon runs another config (or another version of it)"
        elif asked["ask"] == "backup":
            self._long(connection, asked)
            return
        elif asked["ask"] == "restore":
            connection.sendall(_line(self._answer_restore(asked)))
            return
        else:
            connection.sendall(_line(self._answer_status()))
            return
        connection.sendall(_line({"refused": refused}))

    def _answer_status(self) -> dict[str, Any]:
        try:
            return {"status": self._status()}
        except Exception as exc:  # the history is down, or worse: status says it itself
            log.warning("control socket: status could not be read: %s", type(exc).__name__)
            return {"refused": "the daemon could not read the history"}

    def _answer_restore(self, asked: dict[str, Any]) -> dict[str, Any]:
        assert self._restore is not None
        try:
            answer = self._restore(asked)
        except Exception as exc:  # the history is down: the restore reads it itself
            log.warning("control socket: a restore could not be planned: %s", type(exc).__name__)
            return {"refused": "the daemon could not read the history"}
        return {"refused": answer} if isinstance(answer, str) else {"restore": answer}

    def _long(self, connection: socket.socket, asked: dict[str, Any]) -> None:
        """A backup: accepted or refused; once the caller says go, the work in a thread of
        its own, while this one listens for the caller asking to stop (any byte, or the
        connection's end) and watches the daemon stop."""
        assert self._backup is not None
        verdict = "the daemon is stopping" if self._stopping.is_set() else self._backup(asked)
        if isinstance(verdict, str):
            connection.sendall(_line({"refused": verdict}))
            return
        connection.sendall(_line({"accepted": {"said": verdict.said}}))
        # Nothing runs before the caller says go: one that gave up waiting for the answer
        # has gone, and runs the backup itself; it must not run twice.
        said, more = _read_line(connection, 64)
        if said != b"go":
            log.debug("control socket: a backup accepted, never started: %r", said)
            return
        caller = Caller(connection)
        if more:
            caller.cancel.set()
        work = threading.Thread(
            target=self._work, args=(verdict, caller), name="control-work", daemon=True
        )
        work.start()
        # No timeout from here: a caller that reads slowly must not end its backup.
        connection.settimeout(None)
        listening = not more
        while work.is_alive():
            if self._stopping.is_set():
                caller.cancel.set()
            if not listening or not select.select([connection], [], [], 0.5)[0]:
                work.join(0 if listening else 0.5)
                continue
            try:
                heard = connection.recv(64)
            except OSError:
                heard = b""
            if not heard:
                listening = False  # the caller is gone: stop, and listen no more
            caller.cancel.set()
        caller.finish()

    @staticmethod
    def _work(accepted: Accepted, caller: Caller) -> None:
        try:
            accepted.run(caller)
        except Exception:
            log.exception("control socket: a backup asked for failed inside firebreak")
            failed = "the daemon failed inside firebreak (its log says why)"
            caller.say({"error": failed, "code": 1})


def _peer_uid(caller: socket.socket) -> int:
    size = struct.calcsize("3i")
    _pid, uid, _gid = struct.unpack(
        "3i", caller.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    )
    return int(uid)


def _read_line(caller: socket.socket, limit: int) -> tuple[bytes, bytes]:
    """Up to the first newline, the end, or limit bytes; and what came after the newline."""
    got = b""
    while b"\n" not in got and len(got) < limit:
        chunk = caller.recv(limit - len(got))
        if not chunk:
            break
        got += chunk
    line, _, more = got.partition(b"\n")
    return line, more


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


class Asking:
    """A question to the running daemon, from the caller's side: its first answer within
    ASK_SECONDS, then (a backup) what it says until it is done, however long that takes, or
    until STOP_WAIT_SECONDS after the caller asked it to stop."""

    def __init__(
        self, state_dir: Path, question: dict[str, Any], within: float | None = None
    ) -> None:
        """within: how long from now the first answer may take (ASK_SECONDS), connecting
        included. Raises OSError when no daemon listens there, or what answers is not one
        (its user is neither root, nor this one, nor state_dir's owner)."""
        self.path = state_dir / SOCKET_NAME
        self._daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._heard = b""
        self._stopped_at: float | None = None
        within = ASK_SECONDS if within is None else within
        self._first_by = time.monotonic() + within
        try:
            self._daemon.settimeout(within)
            with _address(self.path) as address:
                self._daemon.connect(address)
            uid = _peer_uid(self._daemon)
            if uid not in (0, os.getuid(), state_dir.stat().st_uid):
                raise PermissionError(f"{self.path} is served by uid {uid}, not a daemon's")
            self._daemon.sendall(_line(question))
        except OSError:
            self._daemon.close()
            raise

    def __enter__(self) -> Asking:
        return self

    def __exit__(self, *exc: object) -> None:
        self._daemon.close()

    def first(self) -> dict[str, Any] | None:
        """The daemon's first answer; None when it said nothing in time, or nothing JSON."""
        return self._next(self._first_by)

    def go(self) -> None:
        """Tell the daemon to start the work it accepted. Raises OSError."""
        self._daemon.sendall(b"go\n")

    def rest(self) -> Iterator[dict[str, Any]]:
        """Everything it says after, until the connection ends; no time limit, unless the
        caller asked it to stop (stop)."""
        while True:
            message = self._next(None)
            if message is None:
                return
            yield message

    def stop(self) -> None:
        """Ask the daemon to stop the work (Ctrl-C): it says how that ended, then the end.
        Safe in a signal handler."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        with contextlib.suppress(OSError):
            self._daemon.sendall(b"stop\n")

    def _next(self, deadline: float | None) -> dict[str, Any] | None:
        """The next JSON line; None at the end, at deadline, or STOP_WAIT_SECONDS after a
        stop."""
        while True:
            line, newline, rest = self._heard.partition(b"\n")
            if newline:
                self._heard = rest
                message = _message(line)
                if message is not None:
                    return message
                continue
            if self._stopped_at is not None:
                stop_deadline = self._stopped_at + STOP_WAIT_SECONDS
                deadline = stop_deadline if deadline is None else min(deadline, stop_deadline)
            if deadline is not None and time.monotonic() >= deadline:
                log.debug("no more from %s in time", self.path)
                return None
            # A stop asked meanwhile counts within a second.
            left = 1.0 if deadline is None else deadline - time.monotonic()
            self._daemon.settimeout(max(0.01, min(1.0, left)))
            try:
                chunk = self._daemon.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as exc:
                log.debug("%s: %s", self.path, exc)
                return None
            if not chunk:
                return None
            self._heard += chunk


def _message(line: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def ask(
    state_dir: Path, question: dict[str, Any], key: str, within: float | None = None
) -> dict[str, Any] | None:
    """The running daemon's answer to a short question (status, restore): what it said
    under key, or None when no daemon listens, it runs another config, it refused, or it did
    not answer within that many seconds (ASK_SECONDS)."""
    try:
        with Asking(state_dir, question, within) as asking:
            answer = asking.first()
    except OSError as exc:
        log.debug("no answer on %s: %s", state_dir / SOCKET_NAME, exc)
        return None
    if answer is None or not isinstance(answer.get(key), dict):
        log.debug("the daemon on %s did not answer: %s", state_dir / SOCKET_NAME, answer)
        return None
    said: dict[str, Any] = answer[key]
    return said


def ask_status(state_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The running daemon's status document for the config with this fingerprint, or None."""
    return ask(state_dir, {"ask": "status", "config": fingerprint}, "status")
