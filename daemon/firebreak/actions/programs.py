"""Programs other than restic that firebreak runs: hooks, dump programs and the tools that
prove a dump. They run through the one runner (limits, masking, a process group); this says
how their end reads as a failure.
"""

from __future__ import annotations

from firebreak.humanize import format_seconds
from firebreak.outcomes import Failure, Interrupted
from firebreak.restic.result import ResticResult, StopReason


def failure_of(result: ResticResult, what: str, failure: type[Failure]) -> Failure | None:
    """How the program's end reads, in words that start with ``what``: None when it did its
    job, Interrupted when it was stopped on request, else ``failure``."""
    reason = result.stop_reason
    if reason is StopReason.CANCELLED:
        return Interrupted(f"{what} was stopped on request")
    if reason is StopReason.TIMEOUT:
        return failure(f"{what} did not end within {format_seconds(result.limit_seconds)}")
    if reason is StopReason.STALLED:
        return failure(f"{what} made no progress for {format_seconds(result.limit_seconds)}")
    if reason is not StopReason.NONE:
        return failure(f"{what} was stopped: {reason.value}")
    if result.exit_code != 0:
        said = last_said(result)
        return failure(f"{what} exited {result.exit_code}" + (f": {said}" if said else ""))
    return None


def last_said(result: ResticResult) -> str:
    """The last line the program wrote to stderr that is not blank (masked already)."""
    return next((line.strip() for line in reversed(result.stderr_tail) if line.strip()), "")
