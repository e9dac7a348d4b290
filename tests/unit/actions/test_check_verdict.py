"""What a failed restic check stands for, from what 0.14 and 0.18+ print (captured from real
runs on a repository with a damaged pack)."""

from __future__ import annotations

import json

from firebreak.actions.check import check_verdict
from firebreak.outcomes import CheckFailed, RepositoryLocked, SiteUnreachable
from firebreak.restic.errors import classify
from firebreak.restic.result import ResticResult

PACK = "d4edbb8cacdce298e35569fc1ae5599312ece796e71ce44aefde00aaa1cab7e9"


def _result(*stderr: str, summary: dict[str, object] | None = None) -> ResticResult:
    result = ResticResult(argv=("restic", "check"), command="check", exit_code=1)
    result.stderr_tail.extend(stderr)
    if summary is not None:
        result.messages.append({"message_type": "summary", **summary})
    return result


def _error(message: str) -> str:
    return json.dumps({"message_type": "error", "message": message})


def test_restic_014_text() -> None:
    result = _result(
        "error for tree 720ce904:",
        "  decrypting blob <tree/720ce904> from d4edbb8c failed: ciphertext verification failed",
        "Fatal: repository contains errors",
    )
    verdict = check_verdict(result, classify(result) or CheckFailed("?"))
    assert isinstance(verdict, CheckFailed)
    assert verdict.message == (
        "error for tree 720ce904: decrypting blob <tree/720ce904> from d4edbb8c failed: "
        "ciphertext verification failed"
    )


def test_restic_018_json_lines_and_its_count() -> None:
    result = _result(
        _error("error for tree 720ce904:\n"),
        _error(
            "  decrypting blob \u003ctree/720ce904\u003e from d4edbb8c failed: "
            "ciphertext verification failed\n"
        ),
        _error("\nThe repository contains damaged pack files. These damaged files must be\n"),
        json.dumps(
            {
                "message_type": "exit_error",
                "code": 1,
                "message": "Fatal: repository contains errors",
            }
        ),
        summary={"num_errors": 2, "broken_packs": [PACK], "suggest_repair_index": False},
    )
    verdict = check_verdict(result, classify(result) or CheckFailed("?"))
    assert isinstance(verdict, CheckFailed)
    assert verdict.message == (
        "error for tree 720ce904: decrypting blob <tree/720ce904> from d4edbb8c failed: "
        "ciphertext verification failed (2 errors; damaged packs: d4edbb8c)"
    )


def test_a_check_that_could_not_finish_is_no_verdict() -> None:
    result = _result(
        "Fatal: unable to open repository at rest:http://127.0.0.1:1/r: connection refused",
        summary=None,
    )
    error = classify(result)
    assert isinstance(error, SiteUnreachable)
    assert check_verdict(result, error) is error
    # 0.18's summary with nothing found is no verdict either
    counted = _result("Fatal: connection refused", summary={"num_errors": 0})
    assert check_verdict(counted, SiteUnreachable("x")).error_class == "SiteUnreachable"


def test_a_check_that_met_a_lock_is_no_verdict_though_restic_counts_an_error() -> None:
    # What restic 0.18 and 0.19 print for check --json at a repository with a stale lock.
    result = _result(
        json.dumps(
            {
                "message_type": "exit_error",
                "code": 11,
                "message": "unable to create lock in backend: repository is already locked by "
                "PID 17347 on vm by root (UID 0, GID 0)\nlock was created at 2026-12-03 "
                "13:45:06 (5.06736367s ago)\nstorage ID 931cd9a1\nthe `unlock` command can be "
                "used to remove stale locks",
            }
        ),
        summary={"num_errors": 1, "broken_packs": None, "suggest_repair_index": False},
    )
    result.exit_code = 11
    error = classify(result)
    assert isinstance(error, RepositoryLocked)
    assert check_verdict(result, error) is error
