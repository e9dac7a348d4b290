"""Retention: ``restic forget --prune`` of one source's snapshots at each site.

Where hosts share the history (PostgreSQL), they may share repositories: there each host
forgets its own snapshots in its turn (``restic forget``, one host at a time), and the
repository is pruned once per retention schedule, by whichever host gets there first, as a
run of its own (``prune``); the others record it skipped, saying who held or did it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from firebreak.actions.locks import done_at_repository, repository_turn, when
from firebreak.actions.operation import at_site, run_restic
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.history.coordination import RepositoryBusy, shared
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome
from firebreak.humanize import format_seconds
from firebreak.outcomes import DeletionRefused, Operation, Status
from firebreak.restic import commands
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify, refuses_deletion
from firebreak.restic.messages import ForgetDecision, forget_decisions

log = logging.getLogger(__name__)

DECLARED = "the site is append-only (append_only: true); nothing is deleted there"
# Told, per site, which snapshots a forget kept (and why) and removed.
DecisionsHeard = Callable[[str, list[ForgetDecision]], None]

# How long a scheduled forget waits for another host's turn at a shared repository (their
# forgets take seconds; a check or prune may take hours, and this host's backups to the site
# wait meanwhile): then it is skipped until the next schedule.
FORGET_PATIENCE = 15 * 60.0

REFUSED = (
    "the site refused to delete ({why}), so it is append-only; nothing is deleted there "
    "(declare append_only: true on the site to skip it without asking)"
)


def forget_at_site(
    rt: Runtime,
    source: str,
    site_name: str,
    *,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
    on_decisions: DecisionsHeard | None = None,
    patience: float | None = None,
) -> Run:
    """Forget (and prune) the source's snapshots at the site as its retention says; the
    snapshots kept and removed, with why, go to ``on_decisions`` and the run's log.
    patience: how long to wait for another host's turn at a shared repository (None: as long
    as it takes), then skipped."""
    retention = rt.config.sources[source].retention
    assert retention is not None, "the caller checks that the source has a retention policy"

    def forget(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        if access.site.append_only:
            run_log.info("skipped: %s", DECLARED)
            return RunOutcome(Status.SKIPPED, error_message=DECLARED)
        invocation = commands.forget(
            rt.restic_at(access),
            source_name=source,
            host=rt.host,
            retention=retention,
            dry_run=dry_run,
            prune=not shared(rt.engine),
        )
        # A site that refuses deletes is append-only: stop at its first refusal instead of
        # letting restic retry it for a minute or more.
        purpose = f"forget of {source}"
        try:
            with repository_turn(rt, site_name, purpose, patience=patience, cancel=cancel):
                result = run_restic(rt, invocation, access, cancel, give_up=refuses_deletion)
        except RepositoryBusy as busy:
            return skipped_busy(run_log, busy, patience)
        error = classify(result)
        if error is None:
            decisions = forget_decisions(result)
            removed = sum(1 for decision in decisions if not decision.keep)
            verb = "would forget" if dry_run else "forgot"
            run_log.info("%s %d, kept %d snapshots", verb, removed, len(decisions) - removed)
            if on_decisions is not None:
                on_decisions(site_name, decisions)
            return RunOutcome(Status.SUCCESS, exit_code=0)
        if isinstance(error, DeletionRefused):
            reason = REFUSED.format(why=error.message.removeprefix("the site refused to delete "))
            run_log.warning("skipped: %s", reason)
            return RunOutcome(
                Status.SKIPPED,
                exit_code=result.exit_code,
                error_class=error.error_class,
                error_message=reason,
            )
        return RunOutcome.failed(error, result.exit_code)

    return at_site(rt, source, site_name, Operation.FORGET, forget, cancel=cancel)


def skipped_busy(run_log: RunLog, busy: RepositoryBusy, patience: float | None) -> RunOutcome:
    """A scheduled run that waited its patience for another host's turn at a shared
    repository: skipped until the next schedule, saying who held it."""
    message = f"{busy} for more than {format_seconds(patience or 0)}: next time"
    run_log.warning("skipped: %s", message)
    return RunOutcome(Status.SKIPPED, error_message=message)


def prune_at_site(
    rt: Runtime,
    site_name: str,
    *,
    done_since: datetime | None = None,
    cancel: threading.Event | None = None,
) -> Run:
    """``restic prune`` of a repository hosts share, unless another one holds it or (with
    done_since) pruned it since then."""

    def prune(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        try:
            with repository_turn(rt, site_name, "prune", patience=0, cancel=cancel):
                if done_since is not None:
                    done = done_at_repository(rt, site_name, Operation.PRUNE, done_since)
                    if done is not None:
                        message = f"pruned by {when(done)}"
                        run_log.info("skipped: %s", message)
                        return RunOutcome(Status.SKIPPED, error_message=message)
                invocation = commands.prune(rt.restic_at(access))
                result = run_restic(rt, invocation, access, cancel, give_up=refuses_deletion)
        except RepositoryBusy as busy:
            run_log.info("skipped: %s", busy)
            return RunOutcome(Status.SKIPPED, error_message=str(busy))
        error = classify(result)
        if error is None:
            run_log.info("pruned")
            return RunOutcome(Status.SUCCESS, exit_code=0)
        return RunOutcome.failed(error, result.exit_code)

    return at_site(rt, None, site_name, Operation.PRUNE, prune, cancel=cancel)


def apply_retention(
    rt: Runtime,
    source: str,
    sites: list[str] | None = None,
    *,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
    on_decisions: DecisionsHeard | None = None,
    done_since: datetime | None = None,
) -> list[Run]:
    """Forget and prune at each site in turn; one site's failure does not stop the others.
    Where the history is shared, the prune is a run of its own after a forget that worked,
    skipped when another host holds the repository or (done_since: a scheduled retention)
    pruned it since then."""
    runs = []
    for name in sites or rt.config.sources[source].sites:
        if cancel is not None and cancel.is_set():
            break
        forgot = forget_at_site(
            rt,
            source,
            name,
            dry_run=dry_run,
            cancel=cancel,
            on_decisions=on_decisions,
            patience=None if done_since is None else FORGET_PATIENCE,
        )
        runs.append(forgot)
        if shared(rt.engine) and not dry_run and forgot.status == Status.SUCCESS:
            runs.append(prune_at_site(rt, name, done_since=done_since, cancel=cancel))
    return runs
