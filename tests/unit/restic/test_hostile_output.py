"""Whatever a restic prints (a future release's new fields, a truncated or corrupted line, JSON
nested ten thousand deep, a line of megabytes, bytes that are not UTF-8), the runner keeps a
bounded result and everything that reads it answers: never a traceback. Property-based, with a
fake restic that prints what hypothesis makes up, on stdout and stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firebreak.actions.check import check_verdict
from firebreak.outcomes import Failure, ResticFailed
from firebreak.restic import messages
from firebreak.restic.errors import classify
from firebreak.restic.result import MAX_MESSAGES, MESSAGE_LIMIT, ResticResult
from firebreak.restic.runner import TEXT_LIMIT, Invocation, run

# JSON restic might print: its message types, with values of any type where restic's are.
_MESSAGE_TYPES = ("status", "summary", "error", "exit_error", "verbose_status", "snapshot")
_FIELDS = (
    "message_type", "snapshot_id", "data_added", "item", "message", "code", "num_errors",
    "broken_packs", "id", "time", "paths", "keep", "remove", "reasons", "snapshot", "size",
    "type", "path", "percent_done", "during", "error",
)  # fmt: off
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    st.sampled_from(_MESSAGE_TYPES),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_FIELDS), inner, max_size=6),
    ),
    max_leaves=20,
)
_objects = st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=8).map(
    lambda d: {"message_type": d.pop("message_type", "summary"), **d}
)


def _encoded(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


_lines = st.one_of(
    _objects.map(_encoded),
    st.lists(_objects, max_size=3).map(_encoded),  # forget and snapshots print arrays
    _objects.map(_encoded).flatmap(lambda line: st.integers(0, len(line)).map(lambda n: line[:n])),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from(
        [
            b"[" * 100_000,  # deeper than Python's recursion limit
            b'{"message_type":"summary","x":' + b"[" * 100_000,
            b"Fatal: " + b"x" * 2_000_000,  # one line of megabytes
            b'{"message_type":"exit_error","code":"12","message":7}',
            b'{"message_type":"error","message":null,"item":{"a":1}}',
            b"\xff\xfe not utf-8 \xc3\x28",
            b"signal interrupt received, cleaning up",
        ]
    ),
)


def _fake_restic(tmp_path: Path) -> str:
    program = tmp_path / "fake-restic"
    program.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "out, err, code = sys.argv[-3:]\n"
        "sys.stdout.buffer.write(open(out, 'rb').read())\n"
        "sys.stderr.buffer.write(open(err, 'rb').read())\n"
        "sys.exit(int(code))\n"
    )
    program.chmod(0o755)
    return str(program)


@pytest.mark.parametrize("command", ["backup", "check", "forget", "snapshots", "ls", "cat"])
@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stdout=st.lists(_lines, max_size=6),
    stderr=st.lists(_lines, max_size=6),
    code=st.sampled_from([0, 1, 3, 10, 11, 12, 130]),
)
def test_whatever_restic_prints_the_result_is_bounded_and_every_reader_answers(
    tmp_path: Path, command: str, stdout: list[bytes], stderr: list[bytes], code: int
) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    out.write_bytes(b"\n".join(stdout))
    err.write_bytes(b"\n".join(stderr))
    statuses: list[object] = []
    invocation = Invocation(
        argv=(_fake_restic(tmp_path), command, "--json", str(out), str(err), str(code)),
        env={},
        command=command,
    )

    result = run(invocation, timeout=60, on_status=statuses.append, on_message=lambda _: None)

    assert result.exit_code == code
    _every_reader_answers(result)


def _every_reader_answers(result: ResticResult) -> None:
    assert len(result.messages) <= MAX_MESSAGES and len(result.stdout_lines) <= MAX_MESSAGES
    assert all(len(line) <= TEXT_LIMIT for line in [*result.stdout_lines, *result.stderr_tail])
    message = result.error_message()
    assert isinstance(message, str) and len(message) <= MESSAGE_LIMIT
    error = classify(result)
    if error is not None:
        assert isinstance(error, Failure) and isinstance(error.message, str)
        assert isinstance(check_verdict(result, error), Failure)
    assert isinstance(check_verdict(result, ResticFailed("x")), Failure)
    messages.backup_summary(result)
    messages.check_summary(result)
    messages.snapshot_list(result)
    messages.forget_decisions(result)
    assert isinstance(messages.partial_backup_problem(result), str)
    messages.repository_id(result)
    for value in result.messages:
        messages.listed_file(value)
    result.stderr_lines()
