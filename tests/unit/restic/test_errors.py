"""Classification: exit code first, then restic's exit_error JSON, then stderr text.

The stderr texts are what restic 0.14 (which exits 1 for every fatal error) really prints;
the exit_error lines are restic 0.17+'s JSON form.
"""

from __future__ import annotations

import pytest

from firebreak import outcomes
from firebreak.restic import errors
from firebreak.restic.result import ResticResult, StopReason, decoded


def _result(
    code: int, *stderr: str, exit_error: int | None = None, argv: tuple[str, ...] = ("restic",)
) -> ResticResult:
    result = ResticResult(argv=argv, command=argv[1] if len(argv) > 1 else "", exit_code=code)
    result.stderr_tail.extend(stderr)
    result.exit_error_code = exit_error
    return result


CASES = [
    (_result(1, "Fatal: wrong password or no key found"), outcomes.WrongPassword),
    (_result(12, "Fatal: wrong password or no key found"), outcomes.WrongPassword),
    (
        _result(
            1,
            "Fatal: unable to open config file: stat /r/config: no such file or directory",
            "Is there a repository at the following location?",
            "/r",
        ),
        outcomes.RepositoryNotFound,
    ),
    (
        _result(10, "Fatal: repository does not exist: unable to open config file"),
        outcomes.RepositoryNotFound,
    ),
    (
        _result(
            1,
            'Fatal: unable to open config file: client.Head: Head "http://127.0.0.1:1/x/config": '
            "dial tcp 127.0.0.1:1: connect: connection refused",
            "Is there a repository at the following location?",
        ),
        outcomes.SiteUnreachable,
    ),
    (
        _result(
            1,
            "unable to create lock in backend: repository is already locked exclusively by PID 5925",
            "the `unlock` command can be used to remove stale locks",
        ),
        outcomes.RepositoryLocked,
    ),
    (_result(11, "Fatal: unable to create lock in backend"), outcomes.RepositoryLocked),
    (
        _result(
            3, "Warning: at least one source file could not be read", argv=("restic", "backup")
        ),
        outcomes.PartialBackup,
    ),
    (_result(1, "Fatal: all target directories/files do not exist"), outcomes.SourceMissing),
    (_result(130, "signal interrupt received, cleaning up"), outcomes.Interrupted),
    (_result(1, '{"message_type":"exit_error","code":12}', exit_error=12), outcomes.WrongPassword),
    (_result(77, "something new"), outcomes.ResticFailed),
    (
        _result(1, "subprocess ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused"),
        outcomes.SiteUnreachable,
    ),
    # restic 0.14 asks "Is there a repository...?" after any config read failure: a 401 is
    # not a missing repository (init: auto must not try to create one).
    (
        _result(
            1,
            "Fatal: unable to open config file: Stat: client.Head: unexpected HTTP response (401): 401 Unauthorized",
            "Is there a repository at the following location?",
        ),
        outcomes.AccessDenied,
    ),
    (
        _result(
            1,
            "Fatal: unable to open config file: Get x509: certificate signed by unknown authority",
            "Is there a repository at the following location?",
        ),
        outcomes.AccessDenied,
    ),
    (
        _result(
            1,
            "Fatal: unable to open config file: <config/> does not exist",
            "Is there a repository at the following location?",
        ),
        outcomes.RepositoryNotFound,
    ),
    (
        _result(
            1,
            "Fatal: unable to open config file: Stat: The specified key does not exist.",
            "Is there a repository at the following location?",
        ),
        outcomes.RepositoryNotFound,
    ),
    # A read-only repository also fails to create a lock: that is not "locked by another".
    (
        _result(1, "unable to create lock in backend: open /r/locks/x: read-only file system"),
        outcomes.SiteReadOnly,
    ),
    # A full site, as 0.14 and 0.19 say it.
    (
        _result(
            1,
            "Fatal: unable to save snapshot: write /r/data/27/2728-tmp-474934435: no space "
            "left on device",
        ),
        outcomes.SiteFull,
    ),
    (
        _result(
            1,
            "Save(<data/5f05c2067b>) failed: write /r/data/5f/5f05-tmp-530482789: no space "
            "left on device",
            '{"message_type":"exit_error","code":1,"message":"Fatal: unable to save snapshot: '
            'write /r/data/5f/5f05-tmp-530482789: no space left on device"}',
            exit_error=1,
        ),
        outcomes.SiteFull,
    ),
    (
        _result(
            1, "/gone does not exist, skipping", "Fatal: all target directories/files do not exist"
        ),
        outcomes.SourceMissing,
    ),
    # ssh refusing the server's key (when its words reach restic's stderr in time): an
    # operator must look; no network hiccup to retry.
    (
        _result(
            1,
            "subprocess ssh: Host key verification failed.",
            "Fatal: unable to open repository at sftp:x:/r: unable to start the sftp session, "
            "error: EOF",
        ),
        outcomes.AccessDenied,
    ),
    (
        _result(
            1,
            "subprocess ssh: @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
            "Fatal: unable to open repository at sftp:x:/r: unable to start the sftp session",
        ),
        outcomes.AccessDenied,
    ),
]


@pytest.mark.parametrize(
    ("result", "kind"), CASES, ids=[c[1].__name__ + str(i) for i, c in enumerate(CASES)]
)
def test_classification(result: ResticResult, kind: type[outcomes.ResticError]) -> None:
    error = errors.classify(result)
    assert type(error) is kind
    assert error.exit_code == result.exit_code
    assert error.message


def test_success_is_no_error() -> None:
    assert errors.classify(_result(0)) is None


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (StopReason.TIMEOUT, outcomes.Timeout),
        (StopReason.STALLED, outcomes.Stalled),
        (StopReason.CANCELLED, outcomes.Interrupted),
    ],
)
def test_stopped_runs(reason: StopReason, kind: type[outcomes.ResticError]) -> None:
    result = _result(-9, "open repository")
    result.stop_reason, result.limit_seconds = reason, 30
    assert type(errors.classify(result)) is kind


def test_a_stall_before_restic_said_anything_is_a_site_that_does_not_answer() -> None:
    """A site that drops every packet: restic waits silently for its first answer."""
    # What restic 0.18 says once it is stopped there.
    result = _result(
        -9,
        "\x1b[2Ksignal interrupt received, cleaning up",
        '{"message_type":"exit_error","code":1,"message":"Fatal: unable to open config file: '
        'context canceled\\nIs there a repository at the following location?"}',
    )
    result.stop_reason, result.limit_seconds = StopReason.STALLED, 20
    result.silent_when_stopped = True
    error = errors.classify(result)
    assert isinstance(error, outcomes.SiteUnreachable)
    assert error.message == "the site did not answer: nothing from restic in 20s (stopped)"
    # Once restic said anything, a stall is a stall.
    result.silent_when_stopped = False
    assert type(errors.classify(result)) is outcomes.Stalled


def test_a_stall_spent_retrying_a_dead_site_is_an_unreachable_site() -> None:
    """restic 0.17 and later retry a refused connection for up to 15 minutes (real lines of
    0.18 against a stopped REST server); the stall detector stops it."""
    retry = (
        "Stat(<config/>) returned error, retrying after {}: Head "
        '"http://127.0.0.1:9/x/config": dial tcp 127.0.0.1:9: connect: connection refused'
    )
    result = _result(
        -9,
        retry.format("1.015839798s"),
        retry.format("13.801217238s"),
        "signal interrupt received, cleaning up",
    )
    result.stop_reason, result.limit_seconds = StopReason.STALLED, 120
    result.said_when_stopped = (retry.format("13.801217238s"),)
    error = errors.classify(result)
    assert isinstance(error, outcomes.SiteUnreachable)
    assert error.message == (
        'Head "http://127.0.0.1:9/x/config": dial tcp 127.0.0.1:9: connect: connection refused'
        " (restic kept retrying; stopped after 120s without progress)"
    )
    # Retrying something else is still a stall.
    other = _result(-9, "Load(<data/1a2b>) returned error, retrying after 2s: 500 Internal")
    other.stop_reason, other.limit_seconds = StopReason.STALLED, 120
    assert type(errors.classify(other)) is outcomes.Stalled


def test_a_dead_site_retried_mid_transfer_is_a_stall_that_leaves_a_lock() -> None:
    """restic 0.18 in a backup whose site was blackholed mid-transfer; once stopped, it
    retries deleting its lock (that comes after the stop, and is not why it was stopped)."""
    save = (
        "Save(<data/5e1b2c3d4f>) returned error, retrying after 1.2s: client.Do: Post "
        '"http://10.213.0.2:8000/r/data/5e1b2c3d4f": dial tcp 10.213.0.2:8000: i/o timeout'
    )
    unlock = (
        "Remove(<lock/064bc06eae>) returned error, retrying after 0.6s: client.Do: Delete "
        '"http://10.213.0.2:8000/r/locks/064bc06eae": dial tcp 10.213.0.2:8000: i/o timeout'
    )
    result = _result(-9, save, "signal interrupt received, cleaning up", unlock)
    result.stop_reason, result.limit_seconds = StopReason.STALLED, 15
    result.said_when_stopped = (save,)
    error = errors.classify(result)
    assert isinstance(error, outcomes.Stalled)
    assert "data/5e1b2c3d4f" in error.message and "i/o timeout" in error.message
    assert outcomes.leaves_stale_lock(error.error_class)


def test_message_prefers_restics_fatal_line() -> None:
    result = _result(1, "open repository", "Fatal: wrong password or no key found")
    assert result.error_message() == "wrong password or no key found"


# What restic 0.14 prints when an append-only REST server (rclone --append-only) refuses a
# delete: a retry line per attempt, then the final failure and a stack trace.
FORGET = ("restic", "forget", "--json", "--prune", "--keep-last", "1")
REFUSED_RETRY = (
    "Remove(<snapshot/2792d8282c>) returned error, retrying after 552.330144ms: "
    "blob not removed, server response: 403 Forbidden (403)"
)


def test_a_refused_delete_is_told_apart_from_other_retries() -> None:
    assert errors.refuses_deletion(REFUSED_RETRY)
    assert not errors.refuses_deletion(
        "Remove(<lock/0a1b2c3d4e>) returned error, retrying after 1s: dial tcp 127.0.0.1:1: "
        "connect: connection refused"
    )
    assert not errors.refuses_deletion(
        "Save(<data/0a1b2c3d4e>) returned error, retrying after 1s: 403 Forbidden"
    )
    assert not errors.refuses_deletion("unable to remove <snapshot/2792d8282c> from the repository")


def test_a_run_stopped_at_a_refused_delete_is_deletion_refused() -> None:
    result = _result(130, "1 snapshots", REFUSED_RETRY, argv=FORGET)
    result.stop_reason = StopReason.GAVE_UP
    error = errors.classify(result)
    assert isinstance(error, outcomes.DeletionRefused)
    assert error.message == (
        "the site refused to delete <snapshot/2792d8282c>: "
        "blob not removed, server response: 403 Forbidden (403)"
    )


def test_a_refused_delete_that_restic_gave_up_on_is_deletion_refused() -> None:
    lines = (
        "unable to remove <snapshot/2792d8282c> from the repository",
        "blob not removed, server response: 403 Forbidden (403)",
        "github.com/restic/restic/internal/backend/rest.(*Backend).Remove",
    )
    assert isinstance(errors.classify(_result(1, *lines, argv=FORGET)), outcomes.DeletionRefused)
    # Only a command that deletes can be refused a delete, whatever words its argv holds.
    for backup in (
        ("restic", "backup", "--json", "--", "/srv"),
        ("restic", "backup", "--json", "--tag", "prune", "--", "/srv/forget"),
    ):
        error = errors.classify(_result(1, *lines, argv=backup))
        assert not isinstance(error, outcomes.DeletionRefused)


def test_a_missing_source_path_is_never_a_clean_success() -> None:
    """restic 0.14 through 0.18 skip it and exit 0; 0.19 exits 3 (its exit_error says so)."""
    skipped = "/srv/gone does not exist, skipping"
    backup = ("restic", "backup")
    old = _result(0, skipped, argv=backup)
    new = _result(
        3,
        skipped,
        '{"message_type":"exit_error","code":3,"message":"Warning: at least one source file '
        'could not be read"}',
        exit_error=3,
        argv=backup,
    )
    for result in (old, new):
        assert isinstance(errors.classify(result), outcomes.PartialBackup)
    # Only a backup reads sources: the same words from another command are not its business.
    assert errors.classify(_result(0, skipped, argv=("restic", "forget"))) is None
    assert errors.classify(_result(0, argv=backup)) is None


def test_a_delete_refused_without_retrying_is_deletion_refused() -> None:
    """restic 0.18 and later do not retry a 403 and exit 3 (real lines of 0.19 against
    rclone serve restic --append-only)."""
    refused = "Remove(<snapshot/a1295520e8>) failed: unexpected HTTP response (403): 403 Forbidden"
    assert errors.refuses_deletion(refused)
    result = _result(
        3,
        refused,
        "unable to remove snapshot/a1295520e8038ec7eefe2cb8b94a8c3f5318882cbf3d4c1103f9a943b8b6"
        " from the repository",
        '{"message_type":"exit_error","code":3,"message":"failed to remove one or more '
        'snapshots\\nmain.init"}',
        exit_error=3,
        argv=FORGET,
    )
    error = errors.classify(result)
    assert isinstance(error, outcomes.DeletionRefused)
    assert error.message == (
        "the site refused to delete <snapshot/a1295520e8>: "
        "unexpected HTTP response (403): 403 Forbidden"
    )
    # Exit 3 is a partial backup for a backup only.
    other = _result(3, "failed to remove one or more snapshots", exit_error=3, argv=FORGET)
    assert type(errors.classify(other)) is outcomes.ResticFailed


@pytest.mark.parametrize(
    "stderr",
    [
        (  # restic 0.14
            "ignoring error for /src/d/f: mkdir /target/src/d/f: file name too long",
            "Fatal: There were 4 errors",
        ),
        (  # restic 0.18
            '{"message_type":"error","error":{"message":"failed to check for directory: lstat '
            '/target/src/d/f: file name too long"},"during":"restore","item":"/src/d/f"}',
            '{"message_type":"exit_error","code":1,"message":"Fatal: There were 4 errors\\n"}',
        ),
    ],
)
def test_a_restore_that_counts_its_errors_says_the_first(stderr: tuple[str, ...]) -> None:
    result = _result(1, *stderr)
    result.error_messages = [m for m in map(decoded, stderr) if isinstance(m, dict)]
    message = result.error_message()
    assert message.startswith("There were 4 errors; the first: file name too long (")
    assert "/target/src/d/f)" in message


def test_a_stall_while_restic_retries_a_full_site_is_a_full_site() -> None:
    """restic 0.18 retrying a pack upload at a site with no space left, stopped by the stall
    detector before it gives up by itself."""
    save = (
        "Save(<data/5e1b2c3d4f>) returned error, retrying after 4.1s: open "
        "/srv/repo/data/5e/5e1b2c3d4f: no space left on device"
    )
    result = _result(-9, save)
    result.stop_reason, result.limit_seconds = StopReason.STALLED, 120
    result.said_when_stopped = (save,)
    error = errors.classify(result)
    assert isinstance(error, outcomes.SiteFull)
    assert error.message.startswith("open /srv/repo/data/5e/5e1b2c3d4f: no space left on device")
    # Said once, then hung (restic 0.18 on a full disk, once in a while).
    failed = (
        "Save(<data/09d404de39>) failed: write /r/data/09/09d4-tmp-8340: no space left on device"
    )
    result = _result(-9, failed)
    result.stop_reason, result.limit_seconds = StopReason.STALLED, 120
    result.said_when_stopped = (failed,)
    error = errors.classify(result)
    assert isinstance(error, outcomes.SiteFull)
    assert error.message == f"{failed} (then stopped after 120s without progress)"
