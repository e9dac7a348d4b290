"""The runner, driven by small fake restic scripts for what real restic does rarely on demand:
hangs, endless unchanged progress, ignored signals, odd exit codes (see tests/integration for
the real thing)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from firebreak.restic.result import StopReason
from firebreak.restic.runner import Invocation, mask, run


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-restic"
    path.write_text(f"#!{sys.executable}\nimport json, os, signal, subprocess, sys, time\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _invocation(program: str, **kwargs: object) -> Invocation:
    env = {"PATH": os.environ["PATH"]}
    return Invocation(argv=(program, "backup", "--json"), env=env, **kwargs)  # type: ignore[arg-type]


def test_json_stdout_and_stderr_are_kept_apart(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        'print(json.dumps({"message_type": "status", "percent_done": 0.5}))\n'
        'print(json.dumps({"message_type": "summary", "snapshot_id": "abc"}))\n'
        "print('plain text line')\n"
        'sys.stderr.write(json.dumps({"message_type": "error", "item": "/x"}) + "\\n")\n'
        "sys.stderr.write('Warning: at least one source file could not be read\\n')\n"
        "sys.exit(3)",
    )
    statuses: list[dict[str, object]] = []
    result = run(_invocation(program), on_status=statuses.append)
    assert result.exit_code == 3
    assert result.messages_of("summary") == [{"message_type": "summary", "snapshot_id": "abc"}]
    assert result.stdout_lines == ["plain text line"]
    assert result.error_messages == [{"message_type": "error", "item": "/x"}]
    assert statuses == [{"message_type": "status", "percent_done": 0.5}]
    assert result.stop_reason is StopReason.NONE


def test_wall_clock_timeout_stops_a_busy_run(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        "n = 0\nwhile True:\n"
        '    n += 1\n    print(json.dumps({"message_type": "status", "bytes_done": n}), flush=True)\n'
        "    time.sleep(0.05)",
    )
    started = time.monotonic()
    result = run(_invocation(program), timeout=1.0, stall_timeout=30)
    assert result.stop_reason is StopReason.TIMEOUT
    assert result.exit_code != 0
    assert time.monotonic() - started < 10


def test_unchanged_progress_lines_count_as_a_stall(tmp_path: Path) -> None:
    # restic keeps printing the same status on a dead connection: that is not progress.
    program = _script(
        tmp_path,
        "while True:\n"
        '    print(json.dumps({"message_type": "status", "bytes_done": 42}), flush=True)\n'
        "    time.sleep(0.05)",
    )
    result = run(_invocation(program), timeout=60, stall_timeout=1.0)
    assert result.stop_reason is StopReason.STALLED
    assert result.limit_seconds == 1.0


def test_changing_progress_is_not_a_stall(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        "for n in range(30):\n"
        '    print(json.dumps({"message_type": "status", "bytes_done": n}), flush=True)\n'
        "    time.sleep(0.1)\n"
        'print(json.dumps({"message_type": "summary", "snapshot_id": "s"}))',
    )
    result = run(_invocation(program), timeout=60, stall_timeout=1.0)
    assert result.stop_reason is StopReason.NONE
    assert result.exit_code == 0


def test_sigint_ignored_then_sigkill_reaches_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    program = _script(
        tmp_path,
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"child = subprocess.Popen(['sleep', '300'])\nopen({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)",
    )
    started = time.monotonic()
    result = run(_invocation(program), stall_timeout=1.0, kill_grace=1.0)
    assert result.stop_reason is StopReason.STALLED
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "restic's child outlived the kill"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(") ")[1][0] != "Z"


def test_cancel_event_interrupts(tmp_path: Path) -> None:
    program = _script(tmp_path, "time.sleep(300)")
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = run(_invocation(program), cancel=cancel, kill_grace=2)
    assert result.stop_reason is StopReason.CANCELLED


def test_password_arrives_through_an_inherited_pipe(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        "path = os.environ['RESTIC_PASSWORD_FILE']\n"
        "assert path.startswith('/dev/fd/'), path\n"
        "ok = open(path).read() == 'pipe-pw-77'\n"
        "print('match' if ok else 'mismatch')",
    )
    result = run(_invocation(program, password="pipe-pw-77"))
    assert result.exit_code == 0
    assert result.stdout_lines == ["match"]


def test_secrets_are_masked_in_kept_output(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        "sys.stderr.write('Fatal: cannot reach rest:https://user:urlpass@host/ with key s3cr3t-key\\n')\n"
        "sys.exit(1)",
    )
    result = run(_invocation(program, secrets=("s3cr3t-key",)))
    text = result.stderr_text()
    assert "s3cr3t-key" not in text and "urlpass" not in text
    assert "rest:https://user:***@host/" in text
    assert result.error_message().startswith("cannot reach")


def test_mask_hides_secrets_and_url_credentials_only() -> None:
    text = "user pw-77 at rest:https://bob:hunter@host/ and a plain word"
    assert mask(text, ("pw-77", "")) == "user *** at rest:https://bob:***@host/ and a plain word"


def test_secrets_in_json_error_lines_are_masked_whatever_their_characters(tmp_path: Path) -> None:
    # json.dumps escapes ü and quotes: masking the escaped text would miss them.
    program = _script(
        tmp_path,
        "secret = 'Grüße-\"x\\\\y'\n"
        "sys.stderr.write(json.dumps({'message_type': 'exit_error', 'code': 1, 'message': 'bad ' + secret}) + '\\n')\n"
        "sys.exit(1)",
    )
    result = run(_invocation(program, secrets=('Grüße-"x\\y',)))
    assert result.error_messages == [
        {"message_type": "exit_error", "code": 1, "message": "bad ***"}
    ]
    assert result.error_message() == "bad ***"


def test_a_child_holding_restics_pipes_does_not_hold_the_run(tmp_path: Path) -> None:
    # A helper that outlives restic (an ssh, a password agent) keeps stderr open.
    program = _script(
        tmp_path,
        "subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        'print(json.dumps({"message_type": "summary", "snapshot_id": "s"}))',
    )
    started = time.monotonic()
    result = run(_invocation(program), timeout=60, stall_timeout=5)
    assert result.exit_code == 0
    assert result.stop_reason is StopReason.NONE
    assert result.messages_of("summary")
    assert time.monotonic() - started < 5


def test_a_missing_program_is_reported_as_unavailable(tmp_path: Path) -> None:
    from firebreak.restic.errors import ResticUnavailable

    with pytest.raises(ResticUnavailable, match="cannot start"):
        run(_invocation(str(tmp_path / "nope")))


def test_lots_of_output_does_not_deadlock(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        "for n in range(20000):\n"
        "    sys.stderr.write('e' * 200 + '\\n')\n"
        '    print(json.dumps({"message_type": "verbose_status", "n": n}))',
    )
    result = run(_invocation(program), timeout=60)
    assert result.exit_code == 0
    assert len(result.stderr_tail) == result.stderr_tail.maxlen
    assert len(result.messages) == 10_000  # bounded
