"""Which failure a restic run stands for: by exit code first, then restic's ``exit_error`` JSON,
then stderr. (The failure classes themselves are in ``firebreak.outcomes``.)

restic 0.14 exits 1 for every fatal error; 0.17 and later use 10 (no repository), 11 (lock
failed) and 12 (wrong password); they are read on every version (an older restic never
exits with them). A source path that does not exist is a partial backup on every version,
although restic before 0.19 exits 0 for it. The stderr patterns below are what 0.14 through
current print.
"""

from __future__ import annotations

import re

from firebreak.outcomes import (
    AccessDenied,
    DeletionRefused,
    Interrupted,
    PartialBackup,
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
    ResticFailed,
    SiteFull,
    SiteReadOnly,
    SiteServerError,
    SiteUnreachable,
    SourceMissing,
    Stalled,
    Timeout,
    WrongPassword,
)
from firebreak.restic.messages import skipped_paths
from firebreak.restic.progress import RETRYING
from firebreak.restic.result import ResticResult, StopReason

_BY_EXIT_CODE: dict[int, type[ResticError]] = {
    3: PartialBackup,
    10: RepositoryNotFound,
    11: RepositoryLocked,
    12: WrongPassword,
    130: Interrupted,
}

# Order matters. restic 0.14 adds "Is there a repository at the following location?" to every
# failure to read the config file (refused connections, 401s, bad certificates too), so that
# hint proves nothing: only a config file that is really absent means "no repository".
_BY_TEXT: tuple[tuple[re.Pattern[str], type[ResticError]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"wrong password or no key found", WrongPassword),
        (r"repository is already locked", RepositoryLocked),
        (r"all (target|source) directories/files do not exist", SourceMissing),
        (
            r"no space left on device|disk quota exceeded|quotaexceeded|insufficient storage",
            SiteFull,
        ),
        (r"read-only file system", SiteReadOnly),
        # ssh refusing the server's host key (unknown, or changed: someone may stand in the
        # middle) is no network trouble to retry: an operator must look.
        (r"host key verification failed|remote host identification has changed", AccessDenied),
        (
            r"connection refused|no route to host|network is unreachable|i/o timeout"
            r"|connection reset|no such host|connection timed out|tls handshake timeout"
            r"|ssh: connect to host|connection closed by|unable to start the sftp session"
            r"|subprocess ssh:|server misbehaving|broken pipe",
            SiteUnreachable,
        ),
        (
            r"unexpected http response \(5\d\d\)|\b5\d\d (internal server error|bad gateway"
            r"|service unavailable|gateway time-?out)|internalerror|serviceunavailable",
            SiteServerError,
        ),
        (
            r"\b401\b|\b403\b|unauthori[sz]ed|forbidden|access ?denied|permission denied"
            r"|x509:|certificate (is not valid|signed by unknown)|invalidaccesskeyid"
            r"|signaturedoesnotmatch",
            AccessDenied,
        ),
        (
            r"repository does not exist|the specified bucket does not exist|nosuchbucket"
            r"|unable to open config file: .*(no such file or directory|does not exist"
            r"|specified key does not exist|nosuchkey)",
            RepositoryNotFound,
        ),
    )
)


# restic 0.14 retries a refused delete for a minute or more (about 45 s), printing
# "Remove(<snapshot/1a2b3c4d5e>) returned error, retrying after 1.2s: <why>" each time, and
# in the end "unable to remove <snapshot/1a2b3c4d5e> ...". 0.18 and later do not retry a 403:
# "Remove(<snapshot/1a2b3c4d5e>) failed: <why>", "unable to remove snapshot/1a2b... from the
# repository", and exit 3.
_REMOVE = re.compile(
    r"Remove\((<[a-z]+/[0-9a-f]+>)\) (?:returned error, retrying after [^:]*|failed): (.*)"
    r"|unable to remove <?[a-z]+/[0-9a-f]+",
    re.IGNORECASE,
)
_REFUSED = re.compile(
    r"\b403\b|forbidden|access ?denied|permission denied|read-only file system"
    r"|object ?lock|retention period",
    re.IGNORECASE,
)


def refuses_deletion(line: str) -> bool:
    """Whether this stderr line is restic retrying a delete that the site refused: no retry
    can help, so the run may be stopped as soon as it appears."""
    found = _REMOVE.search(line)
    return found is not None and found.group(2) is not None and bool(_REFUSED.search(line))


def _deletion_refused(result: ResticResult) -> DeletionRefused | None:
    tried_to_remove = False
    for line in result.stderr_tail:
        found = _REMOVE.search(line)
        if found is None:
            continue
        tried_to_remove = True
        if found.group(2) is not None and _REFUSED.search(line):
            why = found.group(2).strip()
            return DeletionRefused(f"the site refused to delete {found.group(1)}: {why}")
    if tried_to_remove and _REFUSED.search(result.stderr_text()):
        return DeletionRefused(f"the site refused to delete: {result.error_message()}")
    return None


def classify(result: ResticResult) -> ResticError | None:
    """The error a finished run stands for, or None when restic reported success."""
    if result.stop_reason is StopReason.TIMEOUT:
        return Timeout(f"stopped after the timeout of {result.limit_seconds:.0f}s")
    if result.stop_reason is StopReason.OPEN_IN_VAIN:
        vain = _in_vain(result.retrying_when_stopped or "")
        if vain is not None:
            return vain[1](f"{vain[0]} (restic kept retrying to open the repository; stopped)")
    if result.stop_reason is StopReason.STALLED:
        return _stalled(result)
    if result.stop_reason is StopReason.CANCELLED:
        return Interrupted("stopped on request", exit_code=result.exit_code)
    code = result.exit_code
    # Only a command that deletes can have a delete refused (a backup tagged "prune" cannot).
    deletes = result.command in ("forget", "prune")
    if deletes and (result.stop_reason is StopReason.GAVE_UP or code != 0):
        refused = _deletion_refused(result)
        if refused is not None:
            refused.exit_code = code
            return refused
    if code == 0:
        if result.command == "backup" and skipped_paths(result):
            # restic before 0.19 calls a snapshot without a missing source path a success.
            return PartialBackup("a source path does not exist", exit_code=code)
        return None
    message = result.error_message()
    kind = _by_code(code, result.command)
    if kind is None and result.exit_error_code is not None:
        kind = _by_code(result.exit_error_code, result.command)
    if kind is None or kind is RepositoryNotFound:
        # restic 0.14 exits 1 for everything, and an unreachable server also prints "Is there
        # a repository ...?": the text decides between the two.
        kind = _classify_text(result.stderr_text()) or kind
    if kind is None:
        kind = ResticFailed
    return kind(message, exit_code=code)


def _stalled(result: ResticResult) -> ResticError:
    """What a run stopped for showing no progress stands for, from what restic had said.

    restic 0.18 and later retry a dead, failing, full or read-only site for up to 15 minutes
    (0.14 gives up at once): the run is named for the site's trouble. A full or read-only site
    stays so; a dead one met while opening the repository holds no lock of restic's; met
    later, restic may hold one, and Stalled says so (restic unlock before the next run there).
    """
    limit = f"stopped after {result.limit_seconds:.0f}s without progress"
    retry = result.retrying_when_stopped or ""
    why, trouble = _why_retried(retry) or ("", None)
    if trouble is not None and trouble in _STAYS:
        return trouble(f"{why} (restic kept retrying; {limit})")
    if trouble is not None and trouble in (SiteUnreachable, SiteServerError):
        named = trouble if _OPENING.search(retry) else Stalled
        return named(f"{why} (restic kept retrying; {limit})")
    said = _classify_text("\n".join(result.said_when_stopped))
    if said is not None and said in _STAYS:
        # It said so, then hung (seen with 0.18 on a full disk): the disk is the trouble.
        return said(f"{_first_saying(result.said_when_stopped, said)} (then {limit})")
    if result.silent_when_stopped:
        # Nothing at all, not even the first answer opening the repository: a site that
        # drops every packet (restic 0.14 waits 30 s for it, later ones again and again).
        return SiteUnreachable(
            f"the site did not answer: nothing from restic in {result.limit_seconds:.0f}s (stopped)"
        )
    return Stalled(limit)


# A site's trouble that does not go away while restic retries.
_STAYS: tuple[type[ResticError], ...] = (SiteFull, SiteReadOnly)


# restic opening a repository: "Stat(<config/>) returned error, retrying after 1s: <why>"
# (0.18 and later; "Load(<config/>, 0, 0)" for some backends).
_OPENING = re.compile(r"^(?:Stat|Load)\(<config/?>[^)]*\) returned error, retrying after")


def opening_in_vain(line: str) -> bool:
    """Whether this stderr line is restic retrying to open the repository at a site that
    cannot be reached (refused, no route, no such host) or answers with server errors."""
    return _OPENING.search(line) is not None and _in_vain(line) is not None


def _by_code(code: int, command: str) -> type[ResticError] | None:
    # Exit 3 is a snapshot with files missing, for a backup; forget exits 3 too (0.18 and
    # later) when it could not remove every snapshot it meant to.
    if code == 3 and command != "backup":
        return None
    return _BY_EXIT_CODE.get(code)


def _why_retried(line: str) -> tuple[str, type[ResticError] | None] | None:
    """(why, the failure its words stand for) when this line is restic retrying."""
    found = RETRYING.search(line)
    if found is None:
        return None
    why = found.group(1).strip()
    return why, _classify_text(why)


def _in_vain(line: str) -> tuple[str, type[ResticError]] | None:
    """(why, failure) when this line is restic retrying at a site that cannot be reached or
    answers with server errors: no retry of restic's will help soon."""
    retried = _why_retried(line)
    if retried is None:
        return None
    why, kind = retried
    return (why, kind) if kind is not None and kind in (SiteUnreachable, SiteServerError) else None


def _first_saying(lines: tuple[str, ...], kind: type[ResticError]) -> str:
    """The first line whose words stand for this failure."""
    return next((line for line in lines if _classify_text(line) is kind), "")


def _classify_text(text: str) -> type[ResticError] | None:
    for pattern, kind in _BY_TEXT:
        if pattern.search(text):
            return kind
    return None
