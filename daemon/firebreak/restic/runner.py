"""The one place a restic process is started.

An argument list (never a shell), a fresh environment, the process in its own process group,
stdout and stderr read line by line, a wall-clock timeout and a stall timeout, cancellation by
SIGINT then SIGKILL, secrets masked in everything that is kept.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from firebreak.outcomes import Failure, ResticUnavailable
from firebreak.restic.errors import opening_in_vain
from firebreak.restic.progress import IoCounters, Progress, sample_io
from firebreak.restic.result import MAX_MESSAGES, ResticResult, StopReason, decoded

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 10.0
IO_SAMPLE_SECONDS = 0.2
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE)
# Where an argument names Invocation.piped's pipe: replaced by /dev/fd/N when the program
# starts. (A NUL cannot be in a real argument, so this cannot be mistaken for one.)
PIPED_FILE = "\0piped\0"
# restic 0.18 and later retry opening a repository at a site that refuses connections for 15
# minutes (0.14 gives up at once): after this many tries, firebreak stops it (about 4 s in).
OPEN_RETRIES = 3
# The lines of a Go stack trace, which restic 0.14 prints after some errors (40 lines and
# more): "github.com/restic/restic/internal/restic.NewLock", then
# "\tgithub.com/restic/restic/internal/restic/lock.go:66". A message has spaces; these do not.
_GO_FRAME = re.compile(r"^\t\S+\.go:\d+|^[A-Za-z_][\w.-]*(/[\w.-]+)*\.[\w.()*]+$")
# What hand_over writes at most: a pipe holds 64 KiB before a write blocks.
PIPE_LIMIT = 60_000


@dataclass(frozen=True)
class Invocation:
    """Everything needed to start restic (or a hook, or a database dump) once. Built by pure
    functions, run by ``run``."""

    argv: tuple[str, ...]
    env: dict[str, str]
    # A password handed over through an inherited pipe (RESTIC_PASSWORD_FILE=/dev/fd/N).
    password: str | None = None
    # A private file's contents (a MariaDB option file with a password), handed over the
    # same way, where an argument holds PIPED_FILE: never on disk, never in argv.
    piped: str | None = None
    # Values to mask wherever output is kept or logged.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # The restic command (backup, forget, ...): what the run does, without reading argv.
    command: str = ""
    # Where it runs: "/" unless it must be elsewhere (a dump backed up as ".").
    cwd: str = "/"
    # Standard output into this file instead of being read (a dump: binary and large),
    # standard input from this one instead of nothing (loading a dump).
    stdout_path: Path | None = None
    stdin_path: Path | None = None
    # What it is called when it cannot be started at all.
    unavailable: type[Failure] = ResticUnavailable

    def __repr__(self) -> str:  # never show env values or the password
        return f"Invocation(argv={self.argv!r})"


def mask(text: str, secrets: Iterable[str]) -> str:
    """Hide secrets and credentials embedded in URLs (``rest:https://user:pw@host``)."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return _URL_CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True)
class Limits:
    """When firebreak stops restic: after ``timeout`` seconds in all, after ``stall_timeout``
    seconds without progress, or once ``cancel`` is set."""

    timeout: float | None = None
    stall_timeout: float | None = None
    cancel: threading.Event | None = None


@dataclass(frozen=True)
class Listeners:
    """Who hears about a run while it goes on.

    on_status: each ``status`` line. on_message: each other JSON value on stdout, as it
    arrives (the result keeps only the first MAX_MESSAGES). on_io: restic's I/O counters, a
    few times a second. give_up: a stderr line for which restic should be stopped at once (it
    would only retry in vain).
    """

    on_status: Callable[[dict[str, Any]], None] | None = None
    on_message: Callable[[Any], None] | None = None
    on_io: Callable[[IoCounters], None] | None = None
    give_up: Callable[[str], bool] | None = None


def run(
    invocation: Invocation,
    *,
    timeout: float | None = None,
    stall_timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    on_message: Callable[[Any], None] | None = None,
    on_io: Callable[[IoCounters], None] | None = None,
    give_up: Callable[[str], bool] | None = None,
    kill_grace: float = KILL_GRACE_SECONDS,
    started: subprocess.Popen[bytes] | None = None,
) -> ResticResult:
    """Run restic to the end (or until a limit) and return what it said. The keywords are
    those of Limits and Listeners; kill_grace: how long after SIGINT restic gets SIGKILL;
    started: this invocation's restic, already started by ``start`` (and read by nobody).

    Never raises for restic's own failures: ``errors.classify`` reads the result. Raises
    ResticUnavailable only when the program cannot be started at all.
    """
    watch = _Watch(
        invocation,
        started or start(invocation),
        Limits(timeout, stall_timeout, cancel),
        Listeners(on_status, on_message, on_io, give_up),
        kill_grace,
    )
    return watch.to_the_end()


def start(invocation: Invocation) -> subprocess.Popen[bytes]:
    """restic in a process group of its own, its password (if any) on an inherited pipe."""
    env = dict(invocation.env)
    argv = invocation.argv
    program = argv[0]
    unavailable = invocation.unavailable
    if shutil.which(program, path=env.get("PATH")) is None:
        raise unavailable(f"cannot start {program}: no such program, or not executable")
    handed: list[int] = []
    with contextlib.ExitStack() as files:
        files.callback(_close_all, handed)
        try:
            if invocation.password is not None:
                handed.append(hand_over(invocation.password))
                env["RESTIC_PASSWORD_FILE"] = f"/dev/fd/{handed[-1]}"
            if invocation.piped is not None:
                handed.append(hand_over(invocation.piped))
                argv = tuple(arg.replace(PIPED_FILE, f"/dev/fd/{handed[-1]}") for arg in argv)
        except ValueError as exc:
            raise unavailable(f"cannot start {program}: {exc}") from None
        try:
            stdin: IO[bytes] | int = subprocess.DEVNULL
            stdout: IO[bytes] | int = subprocess.PIPE
            if invocation.stdin_path is not None:
                stdin = files.enter_context(invocation.stdin_path.open("rb"))
            if invocation.stdout_path is not None:
                stdout = files.enter_context(invocation.stdout_path.open("xb"))
            process = subprocess.Popen(
                (*_die_with_parent(), *argv),
                env=env,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                pass_fds=tuple(handed),
                start_new_session=True,
                cwd=invocation.cwd,  # nothing may depend on where firebreak was started
            )
        except OSError as exc:
            raise unavailable(f"cannot start {program}: {exc.strerror or exc}") from None
    log.debug("started %s (pid %d)", " ".join(argv), process.pid)
    return process


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def hand_over(content: str) -> int:
    """A pipe holding content, to be read once by a child it is passed to: its reading end.
    Raises ValueError for more than a pipe holds before a write would block (the content is
    written before the child starts)."""
    data = content.encode()
    if len(data) > PIPE_LIMIT:
        raise ValueError(f"a secret of {len(data)} bytes is more than a pipe holds ({PIPE_LIMIT})")
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


class _Watch:
    """One restic process from its start to its reaping: its output read line by line, its
    I/O counters sampled, its limits applied, and stopped when one is reached."""

    def __init__(
        self,
        invocation: Invocation,
        process: subprocess.Popen[bytes],
        limits: Limits,
        listeners: Listeners,
        kill_grace: float,
    ) -> None:
        self.process = process
        self.secrets = invocation.secrets
        self.limits = limits
        self.listeners = listeners
        self.kill_grace = kill_grace
        shown = tuple(arg.replace(PIPED_FILE, "/dev/fd/N") for arg in invocation.argv)
        self.result = ResticResult(argv=shown, command=invocation.command)
        self.stdout_path = invocation.stdout_path
        self.progress = Progress()
        self.started = time.monotonic()
        self.watched = listeners.on_io is not None or limits.stall_timeout is not None
        self.next_sample = 0.0
        self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self.open_streams = 0
        # Times restic said it would retry opening the repository at an unreachable site.
        self.open_retries = 0
        # Bytes read from restic's stdout and stderr (one slot per reader thread): its own
        # output is in its I/O counters too, and is not progress.
        self.piped = [0, 0]
        streams = ((process.stdout, "out"), (process.stderr, "err"))
        self.readers = [
            threading.Thread(target=_pump, args=(stream, name, self.lines, self.piped, slot))
            for slot, (stream, name) in enumerate(streams)
            if stream is not None  # stdout may go to a file
        ]
        self.open_streams = len(self.readers)
        for reader in self.readers:
            reader.daemon = True
            reader.start()

    def to_the_end(self) -> ResticResult:
        try:
            stopped = self._follow()
            exited = not stopped and _exited_unreaped(self.process, within=2.0)
            if self.watched and exited and self.process.returncode is None:
                # The final count: complete once restic has exited, readable until it is
                # reaped. A process firebreak stopped was reaped while it was stopped, and
                # its pid may belong to another process by now: it is not read.
                self._sample_io()
        except BaseException:
            # A failure in firebreak (a callback, an interrupt) must not leave restic running
            # with nobody reading its pipes, holding its repository lock.
            _stop(self.process, self.kill_grace)
            raise
        try:
            self.result.exit_code = self.process.wait(timeout=self.kill_grace)
        except subprocess.TimeoutExpired:
            _stop(self.process, 0)
            self.result.exit_code = self.process.wait()
        for reader in self.readers:
            reader.join(timeout=1.0)
        self.result.duration_seconds = time.monotonic() - self.started
        log.debug(
            "restic %s (pid %d) ended: exit %d after %.2fs",
            self.result.command or "?",
            self.process.pid,
            self.result.exit_code,
            self.result.duration_seconds,
        )
        return self.result

    def _follow(self) -> bool:
        """Read until restic is done, or stop it at a limit; True when it was stopped."""
        while self.open_streams:
            quiet = not self._read_line()
            if self.watched and time.monotonic() >= self.next_sample:  # a few times a second
                self.next_sample = time.monotonic() + IO_SAMPLE_SECONDS
                self._sample_io()
            if _exited_unreaped(self.process):
                # restic has exited: no limit applies any more. A child that inherited its
                # pipes (an ssh, a password helper) must not keep the run open: once the pipes
                # go quiet, keep what is already on its way and stop reading.
                if quiet:
                    self._drain(heard=True)
                    return False
                continue
            # Checked after every line, not only on quiet ticks: a chatty process must not
            # outrun its limits.
            reason, limit = self._limit_reached()
            if reason is not StopReason.NONE:
                self.result.stop_reason, self.result.limit_seconds = reason, limit
                self.result.silent_when_stopped = self.result.said_nothing()
                self.result.said_when_stopped = tuple(self.result.stderr_lines())
                # Stopping on request is routine; a limit reached is worth a warning.
                level = logging.INFO if reason is StopReason.CANCELLED else logging.WARNING
                log.log(level, "stopping restic (pid %d): %s", self.process.pid, reason.value)
                _stop(self.process, self.kill_grace)
                self._drain()
                return True
        return False

    def _read_line(self) -> bool:
        """Take the next line, waiting a moment for one; False when none came."""
        try:
            stream, line = self.lines.get(timeout=0.2)
        except queue.Empty:
            return False
        if line is None:
            self.open_streams -= 1
            return True
        self._take(stream, line)
        give_up = self.listeners.give_up
        if stream == "err" and give_up is not None and give_up(line):
            self.result.stop_reason = StopReason.GAVE_UP
        if stream == "err" and opening_in_vain(line):
            self.open_retries += 1
            if self.open_retries >= OPEN_RETRIES and self.result.stop_reason is StopReason.NONE:
                self.result.stop_reason = StopReason.OPEN_IN_VAIN
        return True

    def _drain(self, *, heard: bool = False) -> None:
        """Keep what the process printed on its way out. heard: it exited by itself, and its
        last lines reach the listeners too (on a busy machine its whole output can arrive
        here); after firebreak stopped it, they do not."""
        deadline = time.monotonic() + 2.0
        while self.open_streams and time.monotonic() < deadline:
            try:
                stream, line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                self.open_streams -= 1
            else:
                self._take(stream, line, draining=not heard)

    def _sample_io(self) -> None:
        sample_io(self.process.pid, self.progress, self.piped, self.listeners.on_io)
        if self.stdout_path is not None:
            # What it writes is progress, whoever writes it: a shell's counters do not move
            # while the program it started writes the dump.
            with contextlib.suppress(OSError):
                self.progress.saw_growth(self.stdout_path.stat().st_size)

    def _limit_reached(self) -> tuple[StopReason, float]:
        if self.result.stop_reason in (StopReason.GAVE_UP, StopReason.OPEN_IN_VAIN):
            return self.result.stop_reason, 0.0
        return limit_reached(self.limits, self.progress, self.started, time.monotonic())

    def _take(self, stream: str, line: str, *, draining: bool = False) -> None:
        """Keep one line: stderr's tail and its error messages, stdout's JSON values."""
        result = self.result
        message: Any = decoded(line) if line.startswith(("{", "[")) else None
        self.progress.saw(message if message is not None else line)
        kind = message.get("message_type") if isinstance(message, dict) else None
        if stream == "err":
            if _GO_FRAME.match(line):
                return  # a stack trace would push the error it follows out of the tail
            result.stderr_tail.append(_kept(mask(line, self.secrets)))
            if kind in ("error", "exit_error") and len(result.error_messages) < MAX_MESSAGES:
                result.error_messages.append(_masked(message, self.secrets))
            if kind == "exit_error" and isinstance(message.get("code"), int):
                result.exit_error_code = message["code"]
        elif message is None:
            if len(result.stdout_lines) < MAX_MESSAGES:
                result.stdout_lines.append(_kept(mask(line, self.secrets)))
        elif kind == "status":
            result.last_status = message
            if self.listeners.on_status is not None and not draining:
                self.listeners.on_status(message)
        else:
            if self.listeners.on_message is not None:
                self.listeners.on_message(message)
            if len(result.messages) < MAX_MESSAGES:
                result.messages.append(message)


def limit_reached(
    limits: Limits, progress: Progress, started: float, now: float
) -> tuple[StopReason, float]:
    """Whether a run that started at ``started`` (monotonic) must be stopped at ``now``, and
    the limit it reached: cancelled, over its timeout, or silent past its stall timeout (only
    when silence can be told from stalling: Progress.watchable)."""
    if limits.cancel is not None and limits.cancel.is_set():
        return StopReason.CANCELLED, 0.0
    if limits.timeout is not None and now - started > limits.timeout:
        return StopReason.TIMEOUT, limits.timeout
    stall = limits.stall_timeout
    silent = now - progress.last_change
    if stall is not None and progress.watchable and silent > stall:
        return StopReason.STALLED, stall
    return StopReason.NONE, 0.0


def _exited_unreaped(process: subprocess.Popen[bytes], within: float = 0.0) -> bool:
    """Whether restic has exited (waiting up to ``within`` seconds). True, and still readable
    in /proc until ``process.wait()``, when it waits unreaped; True, and gone, when it was
    reaped already (``returncode`` is set)."""
    deadline = time.monotonic() + within
    while True:
        if process.returncode is not None:
            return True
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


@functools.cache
def _die_with_parent() -> tuple[str, ...]:
    """setpriv's --pdeathsig: restic gets SIGKILL if firebreak dies, even by SIGKILL.

    (subprocess's preexec_fn could call prctl itself, but it is not safe with threads.)
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("setpriv not found (util-linux): restic may outlive a killed firebreak")
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--")


# The longest line kept whole: `restic snapshots --json` prints every snapshot on one line
# (about 500 bytes each). A longer one is cut, so no output can take the daemon's memory.
LINE_LIMIT = 64 << 20


def _pump(
    stream: IO[bytes] | None,
    name: str,
    lines: queue.Queue[tuple[str, str | None]],
    piped: list[int],
    slot: int,
) -> None:
    assert stream is not None
    with stream:
        while raw := stream.readline(LINE_LIMIT):
            piped[slot] += len(raw)
            if len(raw) == LINE_LIMIT and not raw.endswith(b"\n"):
                # No restic prints such a line: keep its start, drop the rest unread.
                while (rest := stream.readline(LINE_LIMIT)) and not rest.endswith(b"\n"):
                    piped[slot] += len(rest)
                piped[slot] += len(rest)
            lines.put((name, raw.decode("utf-8", errors="replace").rstrip("\r\n")))
    lines.put((name, None))


# A text line is kept up to this long (masked first, so no secret is cut in two).
TEXT_LIMIT = 16 << 10


def _kept(line: str) -> str:
    return line if len(line) <= TEXT_LIMIT else line[: TEXT_LIMIT - 1] + "…"


def _masked(message: Any, secrets: tuple[str, ...]) -> Any:
    """Mask every string inside a decoded JSON value (escaping would hide a secret's text)."""
    if isinstance(message, str):
        return mask(message, secrets)
    if isinstance(message, dict):
        return {key: _masked(value, secrets) for key, value in message.items()}
    if isinstance(message, list):
        return [_masked(value, secrets) for value in message]
    return message


def discard(process: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a restic that ``start`` started and no run watches, reap it, close its pipes."""
    if process.poll() is None:  # once reaped, its pid (and group) may be another's
        _stop(process, grace)
        process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGINT to the whole process group (restic cleans up its lock), SIGKILL after grace."""
    if grace > 0:
        _signal_group(process, signal.SIGINT)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            log.warning("restic (pid %d) ignored SIGINT for %.0fs; killing it", process.pid, grace)
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
