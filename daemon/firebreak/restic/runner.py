"""The one place a restic process is started.

An argument list (never a shell), a fresh environment, the process in its own process group,
stdout and stderr read line by line, a wall-clock timeout and a stall timeout, cancellation by
SIGINT then SIGKILL, secrets masked in everything that is kept.
"""

from __future__ import annotations

import contextlib
import functools
import json
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
from typing import IO, Any

from firebreak.outcomes import ResticUnavailable
from firebreak.restic.progress import IoCounters, Progress, sample_io
from firebreak.restic.result import MAX_MESSAGES, ResticResult, StopReason

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 10.0
IO_SAMPLE_SECONDS = 0.2
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE)


@dataclass(frozen=True)
class Invocation:
    """Everything needed to start restic once. Built by pure functions, run by ``run``."""

    argv: tuple[str, ...]
    env: dict[str, str]
    # A password handed over through an inherited pipe (RESTIC_PASSWORD_FILE=/dev/fd/N).
    password: str | None = None
    # Values to mask wherever output is kept or logged.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # The restic command (backup, forget, ...): what the run does, without reading argv.
    command: str = ""

    def __repr__(self) -> str:  # never show env values or the password
        return f"Invocation(argv={self.argv!r})"


def mask(text: str, secrets: Iterable[str]) -> str:
    """Hide secrets and credentials embedded in URLs (``rest:https://user:pw@host``)."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return _URL_CREDENTIALS.sub(r"\1***@", text)


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
) -> ResticResult:
    """Run restic to the end (or until a limit) and return what it said.

    on_message: each JSON value on stdout that is not a status line, as it arrives (the
    result keeps only the first MAX_MESSAGES). on_io: restic's I/O counters, sampled about
    five times a second; they also count as progress for the stall detector. give_up: a
    stderr line for which restic should be stopped at once (it would only retry in vain).

    Never raises for restic's own failures: ``errors.classify`` reads the result. Raises
    ResticUnavailable only when the program cannot be started at all.
    """
    result = ResticResult(argv=invocation.argv, command=invocation.command)
    env = dict(invocation.env)
    pass_fds: tuple[int, ...] = ()
    read_fd = None
    if invocation.password is not None:
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, invocation.password.encode())
        finally:
            os.close(write_fd)
        env["RESTIC_PASSWORD_FILE"] = f"/dev/fd/{read_fd}"
        pass_fds = (read_fd,)

    program = invocation.argv[0]
    if shutil.which(program, path=env.get("PATH")) is None:
        if read_fd is not None:
            os.close(read_fd)
        raise ResticUnavailable(f"cannot start {program}: no such program, or not executable")
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            (*_die_with_parent(), *invocation.argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            start_new_session=True,
            cwd="/",  # nothing may depend on where firebreak was started
        )
    except OSError as exc:
        raise ResticUnavailable(
            f"cannot start {invocation.argv[0]}: {exc.strerror or exc}"
        ) from None
    finally:
        if read_fd is not None:
            os.close(read_fd)

    log.debug("started %s (pid %d)", " ".join(invocation.argv), process.pid)
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    # Bytes read from restic's stdout and stderr (one slot per reader thread): its own
    # output is in its I/O counters too, and is not progress.
    piped = [0, 0]
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, "out", lines, piped, 0), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, "err", lines, piped, 1), daemon=True),
    ]
    for reader in readers:
        reader.start()

    progress = Progress()
    open_streams = 2
    watched = on_io is not None or stall_timeout is not None
    next_io = 0.0
    try:
        while open_streams:
            quiet = False
            try:
                stream, line = lines.get(timeout=0.2)
            except queue.Empty:
                quiet = True
            else:
                if line is None:
                    open_streams -= 1
                else:
                    _take_line(
                        stream, line, result, invocation.secrets, progress, on_status, on_message
                    )
                    if stream == "err" and give_up is not None and give_up(line):
                        result.stop_reason = StopReason.GAVE_UP
            if watched and time.monotonic() >= next_io:  # a few samples a second
                next_io = time.monotonic() + IO_SAMPLE_SECONDS
                sample_io(process.pid, progress, piped, on_io)
            if _exited(process):
                # restic has exited: no limit applies any more. A child that inherited its pipes
                # (an ssh, a password helper) must not keep the run open: once the pipes go
                # quiet, keep what is already on its way and stop reading.
                if quiet:
                    _drain(lines, open_streams, result, invocation.secrets, progress, on_message)
                    break
                continue
            # Checked after every line, not only on quiet ticks: a chatty process must not
            # outrun its limits.
            reason, limit = _limit_reached(started, progress, timeout, stall_timeout, cancel)
            if result.stop_reason is StopReason.GAVE_UP:
                reason = StopReason.GAVE_UP
            if reason is not StopReason.NONE:
                result.stop_reason, result.limit_seconds = reason, limit
                # Stopping on request is routine; a limit reached is worth a warning.
                level = logging.INFO if reason is StopReason.CANCELLED else logging.WARNING
                log.log(level, "stopping restic (pid %d): %s", process.pid, reason.value)
                _stop(process, kill_grace)
                _drain(lines, open_streams, result, invocation.secrets, progress, on_message)
                break
        if watched and _exited(process, within=2.0):
            # The final count: complete once restic has exited, readable until it is reaped.
            sample_io(process.pid, progress, piped, on_io)
    except BaseException:
        # A failure in firebreak (a callback, an interrupt) must not leave restic running
        # with nobody reading its pipes, holding its repository lock.
        _stop(process, kill_grace)
        raise

    try:
        result.exit_code = process.wait(timeout=kill_grace)
    except subprocess.TimeoutExpired:
        _stop(process, 0)
        result.exit_code = process.wait()
    for reader in readers:
        reader.join(timeout=1.0)
    result.duration_seconds = time.monotonic() - started
    return result


def _exited(process: subprocess.Popen[bytes], within: float = 0.0) -> bool:
    """Whether restic has exited (waiting up to ``within`` seconds), without reaping it, so
    that its /proc entry and its final I/O counters stay until ``process.wait()``."""
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


def _limit_reached(
    started: float,
    progress: Progress,
    timeout: float | None,
    stall_timeout: float | None,
    cancel: threading.Event | None,
) -> tuple[StopReason, float]:
    now = time.monotonic()
    if cancel is not None and cancel.is_set():
        return StopReason.CANCELLED, 0.0
    if timeout is not None and now - started > timeout:
        return StopReason.TIMEOUT, timeout
    silent = now - progress.last_change
    if stall_timeout is not None and progress.watchable and silent > stall_timeout:
        return StopReason.STALLED, stall_timeout
    return StopReason.NONE, 0.0


def _pump(
    stream: IO[bytes] | None,
    name: str,
    lines: queue.Queue[tuple[str, str | None]],
    piped: list[int],
    slot: int,
) -> None:
    assert stream is not None
    with stream:
        for raw in stream:
            piped[slot] += len(raw)
            lines.put((name, raw.decode("utf-8", errors="replace").rstrip("\r\n")))
    lines.put((name, None))


def _take_line(
    stream: str,
    line: str,
    result: ResticResult,
    secrets: tuple[str, ...],
    progress: Progress,
    on_status: Callable[[dict[str, Any]], None] | None,
    on_message: Callable[[Any], None] | None = None,
) -> None:
    message: Any = None
    if line.startswith(("{", "[")):
        try:
            message = json.loads(line)
        except ValueError:
            message = None
    progress.saw(message if message is not None else line)
    if stream == "err":
        result.stderr_tail.append(mask(line, secrets))
        if isinstance(message, dict) and message.get("message_type") in ("error", "exit_error"):
            if len(result.error_messages) < MAX_MESSAGES:
                result.error_messages.append(_masked(message, secrets))
            if message.get("message_type") == "exit_error" and isinstance(message.get("code"), int):
                result.exit_error_code = message["code"]
        return
    if message is None:
        if len(result.stdout_lines) < MAX_MESSAGES:
            result.stdout_lines.append(mask(line, secrets))
        return
    if isinstance(message, dict) and message.get("message_type") == "status":
        result.last_status = message
        if on_status is not None:
            on_status(message)
        return
    if on_message is not None:
        on_message(message)
    if len(result.messages) < MAX_MESSAGES:
        result.messages.append(message)


def _masked(message: Any, secrets: tuple[str, ...]) -> Any:
    """Mask every string inside a decoded JSON value (escaping would hide a secret's text)."""
    if isinstance(message, str):
        return mask(message, secrets)
    if isinstance(message, dict):
        return {key: _masked(value, secrets) for key, value in message.items()}
    if isinstance(message, list):
        return [_masked(value, secrets) for value in message]
    return message


def _drain(
    lines: queue.Queue[tuple[str, str | None]],
    open_streams: int,
    result: ResticResult,
    secrets: tuple[str, ...],
    progress: Progress,
    on_message: Callable[[Any], None] | None = None,
) -> None:
    """Keep what the process printed on its way out."""
    deadline = time.monotonic() + 2.0
    while open_streams and time.monotonic() < deadline:
        try:
            stream, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        else:
            _take_line(stream, line, result, secrets, progress, None, on_message)


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
