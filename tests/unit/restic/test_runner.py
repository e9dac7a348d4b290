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

from firebreak.outcomes import SiteReadOnly, SiteUnreachable
from firebreak.restic.errors import classify
from firebreak.restic.progress import Progress
from firebreak.restic.result import MAX_MESSAGES, StopReason
from firebreak.restic.runner import PIPED_FILE, Invocation, mask, run


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-restic"
    # Like restic, a fake ends quietly on SIGINT (exit 130): a Python traceback would put the
    # source line it stopped on, text the classifier reads, into stderr.
    path.write_text(
        f"#!{sys.executable}\nimport json, os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: os._exit(130))\n"
        f"{body}\n"
    )
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


def test_restic_retrying_a_request_is_no_progress(tmp_path: Path) -> None:
    # restic 0.18 and later retry a request for 15 minutes, a line each time.
    program = _script(
        tmp_path,
        "while True:\n"
        "    sys.stderr.write('Load(<data/1a2b3c>, 0, 0) returned error, retrying after 0.1s: dial tcp "
        "127.0.0.1:9: connect: connection refused\\n')\n"
        "    sys.stderr.flush()\n"
        "    time.sleep(0.05)",
    )
    result = run(_invocation(program), timeout=60, stall_timeout=1.0)
    assert result.stop_reason is StopReason.STALLED
    assert not result.silent_when_stopped


def test_a_restic_stopped_before_it_said_anything_is_known_to_have_been_silent(
    tmp_path: Path,
) -> None:
    # Waiting for a site that drops every packet; what it says once stopped comes after.
    program = _script(
        tmp_path,
        "def stopped(*_):\n"
        "    sys.stderr.write('signal interrupt received, cleaning up\\n')\n"
        "    os._exit(130)\n"
        "signal.signal(signal.SIGINT, stopped)\n"
        "time.sleep(300)",
    )
    result = run(_invocation(program), timeout=60, stall_timeout=1.0)
    assert result.stop_reason is StopReason.STALLED
    assert result.silent_when_stopped
    assert list(result.stderr_tail) == ["signal interrupt received, cleaning up"]


def test_restic_retrying_to_open_an_unreachable_repository_is_stopped(tmp_path: Path) -> None:
    # restic 0.18 and later would retry it for 15 minutes; 0.14 gives up at once.
    program = _script(
        tmp_path,
        "while True:\n"
        "    sys.stderr.write('Stat(<config/>) returned error, retrying after 0.1s: Head "
        '\\"http://127.0.0.1:9/r/config\\": dial tcp 127.0.0.1:9: connect: connection '
        "refused\\n')\n"
        "    sys.stderr.flush()\n"
        "    time.sleep(0.1)",
    )
    started = time.monotonic()
    result = run(_invocation(program), timeout=60, stall_timeout=30)
    assert result.stop_reason is StopReason.OPEN_IN_VAIN
    assert time.monotonic() - started < 10
    error = classify(result)
    assert isinstance(error, SiteUnreachable)
    assert error.message == (
        'Head "http://127.0.0.1:9/r/config": dial tcp 127.0.0.1:9: connect: connection refused'
        " (restic kept retrying to open the repository; stopped)"
    )


def test_a_go_stack_trace_does_not_push_the_error_out_of_the_tail(tmp_path: Path) -> None:
    # restic 0.14 on a read-only site: the error, 44 lines of stack trace, a last word.
    frames = "".join(
        f"github.com/restic/restic/internal/pkg{n}.(*Thing).Call{n}\\n"
        f"\\tgithub.com/restic/restic/internal/pkg{n}/file.go:{n + 10}\\n"
        for n in range(22)
    )
    program = _script(
        tmp_path,
        "sys.stderr.write('open /r/locks/1fb0-tmp-26: read-only file system\\n"
        + frames
        + "unable to create lock in backend\\n')\nsys.exit(1)",
    )
    result = run(_invocation(program), timeout=30)
    assert list(result.stderr_tail) == [
        "open /r/locks/1fb0-tmp-26: read-only file system",
        "unable to create lock in backend",
    ]
    assert isinstance(classify(result), SiteReadOnly)


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


def test_a_private_file_arrives_through_a_pipe_named_in_argv(tmp_path: Path) -> None:
    # A MariaDB option file with a password: read through /dev/fd/N, never on disk.
    program = _script(
        tmp_path,
        "[path] = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--options=')]\n"
        "assert path.startswith('/dev/fd/'), path\n"
        "print(open(path).read().strip())",
    )
    invocation = Invocation(
        argv=(program, f"--options={PIPED_FILE}"),
        env={"PATH": os.environ["PATH"]},
        piped="[client]\npassword=opt-pw-99",
        secrets=("opt-pw-99",),
    )
    result = run(invocation)
    assert result.exit_code == 0, result.stderr_text()
    assert result.stdout_lines == ["[client]", "password=***"]
    assert result.argv[1] == "--options=/dev/fd/N"  # what the log shows: no NUL


def test_a_wrapped_program_writing_its_output_file_is_not_stalled(tmp_path: Path) -> None:
    # A shell that waits for the program it started moves no bytes itself: what grows in
    # the output file is the evidence.
    program = _script(
        tmp_path,
        "subprocess.run([sys.executable, '-c', 'import sys, time\\n"
        'for _ in range(30): sys.stdout.write("x" * 10); sys.stdout.flush(); '
        "time.sleep(0.1)'], check=True)",
    )
    invocation = Invocation(
        argv=(program,), env={"PATH": os.environ["PATH"]}, stdout_path=tmp_path / "dump"
    )
    result = run(invocation, timeout=60, stall_timeout=1.0)
    assert result.stop_reason is StopReason.NONE
    assert (tmp_path / "dump").read_bytes() == b"x" * 300
    # Once it stops growing, the same run is a stall.
    (tmp_path / "dump").unlink()
    hangs = _script(tmp_path, "subprocess.run(['sleep', '30'])")
    invocation = Invocation(
        argv=(hangs,), env={"PATH": os.environ["PATH"]}, stdout_path=tmp_path / "dump"
    )
    assert run(invocation, timeout=60, stall_timeout=1.0).stop_reason is StopReason.STALLED


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
    from firebreak.outcomes import ResticUnavailable

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


def test_silent_io_is_progress(tmp_path: Path) -> None:
    # restic 0.14's restore prints nothing while it writes the files: the bytes it writes
    # keep it from being taken for stalled.
    program = _script(
        tmp_path,
        f"with open({str(tmp_path / 'out')!r}, 'wb') as f:\n"
        "    for _ in range(25):\n"
        "        f.write(os.urandom(256 * 1024)); f.flush(); time.sleep(0.1)",
    )
    written: list[int] = []
    result = run(
        _invocation(program),
        timeout=60,
        stall_timeout=1.0,
        on_io=lambda c: written.append(c.written),
    )
    assert result.stop_reason is StopReason.NONE
    assert result.exit_code == 0
    assert written[-1] >= 25 * 256 * 1024
    assert written == sorted(written)


def test_trickles_of_io_are_not_progress(tmp_path: Path) -> None:
    # A lock refresh sent into a dead connection: a few hundred bytes now and then.
    program = _script(
        tmp_path,
        f"with open({str(tmp_path / 'out')!r}, 'wb') as f:\n"
        "    while True:\n"
        "        f.write(b'x' * 300); f.flush(); time.sleep(0.1)",
    )
    result = run(_invocation(program), timeout=60, stall_timeout=1.0)
    assert result.stop_reason is StopReason.STALLED


def test_a_flood_of_unchanged_status_lines_is_not_progress(tmp_path: Path) -> None:
    # restic's own output is in its I/O counters too; it must not count as progress.
    program = _script(
        tmp_path,
        "line = json.dumps({'message_type': 'status', 'bytes_done': 42, 'pad': 'x' * 200})\n"
        "while True:\n"
        "    for _ in range(100):\n"
        "        print(line)\n"
        "    sys.stdout.flush(); time.sleep(0.01)",
    )
    result = run(_invocation(program), timeout=60, stall_timeout=1.0)
    assert result.stop_reason is StopReason.STALLED


def test_give_up_stops_restic_at_the_first_hopeless_line(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        "for _ in range(300):\n"
        "    sys.stderr.write('Remove(<snapshot/1>) returned error, retrying: 403\\n')\n"
        "    sys.stderr.flush(); time.sleep(1)",
    )
    seen: list[str] = []

    def hopeless(line: str) -> bool:
        seen.append(line)
        return "403" in line

    result = run(_invocation(program), give_up=hopeless, kill_grace=2)
    assert result.stop_reason is StopReason.GAVE_UP
    assert len(seen) == 1


def test_every_message_reaches_on_message_beyond_what_is_kept(tmp_path: Path) -> None:
    program = _script(
        tmp_path,
        "for n in range(12_000):\n    print(json.dumps({'struct_type': 'node', 'n': n}))",
    )
    seen: list[object] = []
    samples: list[int] = []
    started = time.monotonic()
    result = run(
        _invocation(program), on_message=seen.append, on_io=lambda c: samples.append(c.written)
    )
    # The kernel's counters are read a few times a second, not once per line.
    assert 1 <= len(samples) <= (time.monotonic() - started) / 0.2 + 2
    assert len(seen) == 12_000
    assert seen[-1] == {"struct_type": "node", "n": 11_999}
    assert len(result.messages) == MAX_MESSAGES


def test_a_failing_callback_stops_restic_before_it_propagates(tmp_path: Path) -> None:
    pidfile = tmp_path / "restic.pid"
    program = _script(
        tmp_path,
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "print(json.dumps({'struct_type': 'node'}), flush=True)\n"
        "time.sleep(300)",
    )

    def broken(message: object) -> None:
        raise RuntimeError("a bug in firebreak")

    with pytest.raises(RuntimeError):
        run(_invocation(program), on_message=broken, kill_grace=2)
    deadline = time.monotonic() + 5
    while _alive(int(pidfile.read_text())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(pidfile.read_text())), "restic outlived the failure"


def test_without_io_counters_only_a_command_that_reports_progress_can_stall() -> None:
    from firebreak.restic.runner import Limits, limit_reached

    limits = Limits(stall_timeout=10)
    silent = Progress()
    silent.saw_io(None, printed=0)  # /proc would not tell: silence is not evidence
    silent.last_change -= 100
    now = time.monotonic()
    assert limit_reached(limits, silent, now - 100, now) == (StopReason.NONE, 0.0)
    chatty = Progress()
    chatty.saw_io(None, printed=0)
    chatty.saw({"message_type": "status", "bytes_done": 1})
    chatty.last_change -= 100
    assert limit_reached(limits, chatty, now - 100, now) == (StopReason.STALLED, 10)


def test_a_cancel_goes_first_then_the_timeout_then_a_stall() -> None:
    from firebreak.restic.runner import Limits, limit_reached

    stalled = Progress()
    stalled.last_change -= 100
    now = time.monotonic()
    cancel = threading.Event()
    limits = Limits(timeout=50, stall_timeout=10, cancel=cancel)
    assert limit_reached(limits, stalled, now - 60, now) == (StopReason.TIMEOUT, 50)
    assert limit_reached(limits, stalled, now - 20, now) == (StopReason.STALLED, 10)
    cancel.set()
    assert limit_reached(limits, stalled, now - 60, now) == (StopReason.CANCELLED, 0.0)
    fresh = Progress()
    assert limit_reached(Limits(timeout=50, stall_timeout=10), fresh, now - 5, now)[0] is (
        StopReason.NONE
    )


def test_a_stopped_process_is_never_sampled_after_it_is_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once reaped, restic's pid may belong to another process: reading its /proc/PID/io would
    # report someone else's bytes (or nothing, and a false "cannot read" warning).
    from firebreak.restic import progress

    late: list[int] = []
    real_read_io = progress.read_io

    def read_io(pid: int) -> progress.IoCounters | None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            late.append(pid)  # no longer our child: reaped
        return real_read_io(pid)

    monkeypatch.setattr(progress, "read_io", read_io)
    program = _script(tmp_path, "while True:\n    time.sleep(0.05)")
    counters: list[object] = []
    result = run(_invocation(program), stall_timeout=0.5, on_io=counters.append, kill_grace=2)
    assert result.stop_reason is StopReason.STALLED
    assert counters, "the live process was sampled"
    assert late == []


def test_output_can_go_to_a_file_input_come_from_one_and_the_work_happen_elsewhere(
    tmp_path: Path,
) -> None:
    program = _script(
        tmp_path,
        "data = sys.stdin.buffer.read()\n"
        "sys.stdout.buffer.write(data[::-1] + os.getcwd().encode())\n"
        "sys.stderr.write('done\\n')",
    )
    given = tmp_path / "in.bin"
    given.write_bytes(b"\x00\x01binary\xff")
    kept = tmp_path / "out.bin"
    workdir = tmp_path / "work"
    workdir.mkdir()
    invocation = Invocation(
        argv=(program,),
        env={"PATH": os.environ["PATH"]},
        cwd=str(workdir),
        stdin_path=given,
        stdout_path=kept,
    )
    result = run(invocation, timeout=30, stall_timeout=10)
    assert result.exit_code == 0 and list(result.stderr_tail) == ["done"]
    assert kept.read_bytes() == b"\xffyranib\x01\x00" + str(workdir).encode()
    assert result.stdout_lines == [] and result.messages == []


def test_a_missing_program_is_named_as_its_caller_says(tmp_path: Path) -> None:
    from firebreak.outcomes import DrillFailed

    invocation = Invocation(
        argv=("no-such-dump-tool-4471",), env={"PATH": "/usr/bin"}, unavailable=DrillFailed
    )
    with pytest.raises(DrillFailed, match="cannot start no-such-dump-tool-4471"):
        run(invocation)
