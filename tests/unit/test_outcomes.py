"""The vocabulary runs are recorded in: every recorded name leads back to one class, and what
a failure means for retries, locks and damage is read from that class alone."""

from __future__ import annotations

import pytest

from firebreak import outcomes
from firebreak.outcomes import Failure, failure_named


def _classes() -> list[type[Failure]]:
    return [
        kind
        for kind in vars(outcomes).values()
        if isinstance(kind, type) and issubclass(kind, Failure) and kind is not Failure
    ]


def test_every_recorded_name_leads_back_to_its_class() -> None:
    for kind in _classes():
        if kind is outcomes.ResticError:
            continue  # the base of restic's failures records as its generic member
        assert failure_named(kind.error_class) is kind, kind
    assert failure_named(outcomes.ResticError.error_class) is outcomes.ResticFailed
    assert failure_named(None) is None and failure_named("NoSuchThing") is None


# Recorded by earlier releases: renaming a class must not orphan these rows.
RECORDED = "ConfigError ResticFailed Interrupted CheckFailed DrillFailed SnapshotNotFound"


def test_names_already_in_databases_do_not_change() -> None:
    for name in RECORDED.split():
        assert failure_named(name) is not None, name
    assert outcomes.SiteConfigError.error_class == "ConfigError"


def test_only_transient_failures_are_retried() -> None:
    transient = {kind.error_class for kind in _classes() if outcomes.is_transient(kind.error_class)}
    assert transient == {
        "RepositoryLocked",
        "SiteUnreachable",
        "SiteServerError",
        "Timeout",
        "Stalled",
        "HistoryUnavailable",
    }
    assert not outcomes.is_transient(None) and not outcomes.is_transient("Unknown")


def test_stopped_or_locked_runs_call_for_an_unlock() -> None:
    unlock = {
        kind.error_class for kind in _classes() if outcomes.leaves_stale_lock(kind.error_class)
    }
    assert unlock == {"RepositoryLocked", "Timeout", "Stalled", "Interrupted"}


def test_only_a_verdict_on_the_data_damages_a_site() -> None:
    damaging = {kind.error_class for kind in _classes() if kind.judges_data}
    assert damaging == {"CheckFailed", "DrillFailed"}
    assert outcomes.verdicts() == ("CheckFailed", "DrillFailed", "NotImmutable")


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (outcomes.Interrupted("stopped on request"), outcomes.Status.INTERRUPTED),
        (outcomes.Stalled("no progress"), outcomes.Status.FAILED),
        (outcomes.CheckFailed("pack 1a2b: does not match"), outcomes.Status.FAILED),
    ],
)
def test_a_failure_says_how_its_run_is_recorded(failure: Failure, status: outcomes.Status) -> None:
    from firebreak.history.records import RunOutcome

    outcome = RunOutcome.failed(failure, exit_code=1)
    assert (outcome.status, outcome.error_class, outcome.error_message, outcome.exit_code) == (
        status,
        failure.error_class,
        failure.message,
        1,
    )
