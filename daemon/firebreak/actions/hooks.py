"""Hooks: commands before a source's cycle, after it, and after it failed.

Each runs through the one runner (its own process group, a timeout, SIGINT then SIGKILL, output
kept and masked), without a shell unless its config asks for one, in a fresh environment: the
few variables every program needs, and FIREBREAK_* saying what the cycle is about.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from firebreak.actions.programs import failure_of
from firebreak.config.hooks import Hook, HookCommand, as_command
from firebreak.outcomes import Failure, HookFailed, Interrupted, Status
from firebreak.restic import runner
from firebreak.restic.commands import inherited
from firebreak.restic.result import ResticResult

log = logging.getLogger(__name__)

HOOK_KILL_GRACE = 10.0


@dataclass(frozen=True)
class HookContext:
    """What a hook is told about its cycle."""

    source: str
    cycle_id: int
    sites: Sequence[str]
    outcome: Status | None = None
    failed_sites: Sequence[str] = field(default=())

    def env(self, phase: str) -> dict[str, str]:
        env = inherited(os.environ)
        env.update(
            FIREBREAK_PHASE=phase,
            FIREBREAK_SOURCE=self.source,
            # empty for a cycle that started while the history was away (not numbered yet)
            FIREBREAK_CYCLE_ID=str(self.cycle_id) if self.cycle_id > 0 else "",
            FIREBREAK_SITES=",".join(self.sites),
        )
        if self.outcome is not None:
            env["FIREBREAK_OUTCOME"] = str(self.outcome)
            env["FIREBREAK_FAILED_SITES"] = ",".join(self.failed_sites)
        return env


def run_hooks(
    phase: str,
    hooks: Sequence[Hook],
    context: HookContext,
    cancel: threading.Event | None = None,
) -> Failure | None:
    """Run the phase's hooks in order. Before the cycle, the first that fails stops the rest
    and is returned (the cycle must not back up); after it, every hook runs and a failure is
    only logged. Returns None when nothing stopped the cycle."""
    for number, hook in enumerate(hooks, 1):
        if cancel is not None and cancel.is_set():
            log.warning(
                "[%s] %s hook %d and after: not run, firebreak is stopping",
                context.source,
                phase,
                number,
            )
            return Interrupted(f"{phase} hook {number}: not run, firebreak is stopping")
        failure = _run_one(phase, number, as_command(hook), context, cancel)
        if failure is None:
            continue
        if phase == "before" or isinstance(failure, Interrupted):
            return failure
        log.error("[%s] %s", context.source, failure.message)
    return None


def _run_one(
    phase: str,
    number: int,
    hook: HookCommand,
    context: HookContext,
    cancel: threading.Event | None,
) -> Failure | None:
    shown = hook.shell if hook.shell is not None else hook.words[0]
    shown = shown if len(shown) <= 40 else shown[:39] + "…"
    name = f"{phase} hook {number} ({shown})"
    timeout = hook.timeout.total_seconds()
    invocation = runner.Invocation(
        argv=hook.words, env=context.env(phase), command="hook", unavailable=HookFailed
    )
    log.info("[%s] %s: running", context.source, name)
    try:
        result = runner.run(invocation, timeout=timeout, cancel=cancel, kill_grace=HOOK_KILL_GRACE)
    except HookFailed as exc:
        return HookFailed(f"{name}: {exc.message}")
    _log_output(context.source, name, result)
    return failure_of(result, name, HookFailed)


def _log_output(source: str, name: str, result: ResticResult) -> None:
    """What the hook printed, masked like everything the runner keeps."""
    for line in result.stdout_lines:
        log.info("[%s] %s: %s", source, name, line)
    for message in result.messages:
        log.info("[%s] %s: %s", source, name, message)
    for line in result.stderr_tail:
        log.info("[%s] %s (stderr): %s", source, name, line)
