"""How a run's and a cycle's status are decided: nothing is success without a snapshot."""

from __future__ import annotations

from firebreak.actions.backup import backup_outcome
from firebreak.actions.cycle import cycle_status
from firebreak.history.models import Run
from firebreak.outcomes import Status
from firebreak.restic.errors import classify
from firebreak.restic.result import ResticResult

SUMMARY = {"message_type": "summary", "snapshot_id": "abc123", "files_new": 2, "data_added": 10}


def _result(code: int, *messages: dict[str, object], stderr: str = "") -> ResticResult:
    result = ResticResult(
        argv=("restic", "backup"), command="backup", exit_code=code, messages=list(messages)
    )
    if stderr:
        result.stderr_tail.append(stderr)
    return result


def test_success_needs_a_summary_with_a_snapshot() -> None:
    ok = _result(0, SUMMARY)
    outcome = backup_outcome(ok, classify(ok), initialized=True)
    assert outcome.status == Status.SUCCESS
    assert (outcome.snapshot_id, outcome.files_new, outcome.bytes_added) == ("abc123", 2, 10)
    assert outcome.repository_initialized
    silent = _result(0)
    outcome = backup_outcome(silent, classify(silent), initialized=False)
    assert outcome.status == Status.FAILED
    assert outcome.error_message == "restic exited 0 without a summary naming a snapshot"


def test_exit_3_with_a_snapshot_is_partial_and_without_one_failed() -> None:
    partial = _result(3, SUMMARY, stderr="Warning: at least one source file could not be read")
    assert backup_outcome(partial, classify(partial), initialized=False).status == Status.PARTIAL
    nothing = _result(3, stderr="Warning: at least one source file could not be read")
    assert backup_outcome(nothing, classify(nothing), initialized=False).status == Status.FAILED


def test_a_failure_keeps_no_snapshot_id() -> None:
    failed = _result(1, SUMMARY, stderr="Fatal: wrong password or no key found")
    outcome = backup_outcome(failed, classify(failed), initialized=False)
    assert outcome.status == Status.FAILED and outcome.snapshot_id is None
    assert outcome.error_class == "WrongPassword"


def _runs(*statuses: Status) -> list[Run]:
    return [Run(site=f"s{i}", status=status) for i, status in enumerate(statuses)]


def test_cycle_status() -> None:
    assert cycle_status(_runs(Status.SUCCESS, Status.SUCCESS), expected=2) == Status.SUCCESS
    assert cycle_status(_runs(Status.SUCCESS, Status.PARTIAL), expected=2) == Status.PARTIAL
    assert cycle_status(_runs(Status.PARTIAL, Status.FAILED), expected=2) == Status.FAILED
    assert cycle_status(_runs(Status.SUCCESS, Status.INTERRUPTED), expected=2) == Status.INTERRUPTED


def test_a_site_without_any_run_fails_the_cycle() -> None:
    assert cycle_status(_runs(Status.SUCCESS, Status.SUCCESS), expected=3) == Status.FAILED
    assert cycle_status([], expected=1) == Status.FAILED


def test_a_partial_backup_names_what_the_snapshot_lacks() -> None:
    def outcome(code: int, *stderr: str, unreadable: tuple[str, ...] = ()) -> str:
        result = _result(code, SUMMARY)
        result.stderr_tail.extend(stderr)
        result.error_messages.extend(
            {"message_type": "error", "item": item, "during": "archival"} for item in unreadable
        )
        run = backup_outcome(result, classify(result), initialized=False)
        assert run.status == Status.PARTIAL and run.snapshot_id == "abc123"
        return run.error_message or ""

    assert outcome(0, "/srv/gone does not exist, skipping") == (
        "snapshot written, but source path /srv/gone does not exist (it is not in the snapshot)"
    )
    assert outcome(3, "/a does not exist, skipping", "/b does not exist, skipping") == (
        "snapshot written, but source paths /a, /b do not exist (they are not in the snapshot)"
    )
    assert outcome(3, "/a does not exist, skipping", unreadable=("/srv/x", "/srv/x", "/y")) == (
        "snapshot written, but source path /a does not exist (it is not in the snapshot); "
        "some files could not be read: /srv/x, /y"
    )
    assert outcome(3, "Warning: at least one source file could not be read") == (
        "snapshot written, but some files could not be read"
    )
