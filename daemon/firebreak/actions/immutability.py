"""Proof that an append-only site refuses deletes: write a tiny canary snapshot there, try to
forget it, and expect a refusal.

``append_only: true`` is a promise about the server (rest-server ``--append-only``, a bucket
policy denying deletes), not something firebreak can read from the config. A server restarted
without the flag, or a bucket that only has object lock (restic's delete then succeeds as a
delete marker), keeps the promise on paper only: the credentials on
this host can then delete every backup at the site, and so can whoever takes this host. The
proof asks the site itself. A refused delete verifies it (the canary stays: a few hundred
bytes, tagged ``firebreak:canary``, no source's); an accepted one is ``NotImmutable``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from firebreak.actions.locks import repository_turn
from firebreak.actions.operation import at_site, run_restic
from firebreak.actions.retention import FORGET_PATIENCE, skipped_busy
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.clock import utcnow
from firebreak.history.coordination import RepositoryBusy
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome
from firebreak.outcomes import DeletionRefused, NotImmutable, Operation, ResticFailed, Status
from firebreak.restic import commands
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify, refuses_deletion
from firebreak.restic.messages import backup_summary

NOT_DECLARED = "the site is not declared append_only: true; nothing to prove"


def prove_immutable(
    rt: Runtime,
    site_name: str,
    cancel: threading.Event | None = None,
    *,
    patience: float | None = FORGET_PATIENCE,
) -> Run:
    """Write a canary snapshot at the site and try to forget it: the run succeeds when the
    site refuses, and fails ``NotImmutable`` when the canary is gone."""

    def prove(access: SiteAccess, run_log: RunLog) -> RunOutcome:
        if not access.site.append_only:
            run_log.info("skipped: %s", NOT_DECLARED)
            return RunOutcome(Status.SKIPPED, error_message=NOT_DECLARED)
        at = rt.restic_at(access)
        try:
            with repository_turn(
                rt, site_name, "immutability proof", patience=patience, cancel=cancel
            ):
                stage = Path(tempfile.mkdtemp(prefix="canary-", dir=rt.config.state_dir))
                try:
                    (stage / "canary").write_text(
                        f"firebreak immutability canary of {rt.host} at {site_name}, "
                        f"{utcnow().isoformat(timespec='seconds')}: meant to be undeletable\n"
                    )
                    wrote = run_restic(
                        rt, commands.canary_backup(at, host=rt.host, stage=stage), access, cancel
                    )
                finally:
                    shutil.rmtree(stage, ignore_errors=True)
                written = classify(wrote)
                summary = backup_summary(wrote)
                if written is not None or summary is None or not summary.snapshot_id:
                    failure = written or ResticFailed("the canary backup named no snapshot")
                    return RunOutcome.failed(failure, wrote.exit_code)
                canary = summary.snapshot_id
                forget = commands.forget_snapshot(at, canary)
                tried = run_restic(rt, forget, access, cancel, give_up=refuses_deletion)
        except RepositoryBusy as busy:
            return skipped_busy(run_log, busy, patience)
        error = classify(tried)
        if isinstance(error, DeletionRefused):
            why = error.message.removeprefix("the site refused to delete ")
            run_log.info("immutable: the site refused to delete canary snapshot %s", canary[:8])
            return RunOutcome(
                Status.SUCCESS,
                exit_code=tried.exit_code,
                snapshot_id=canary,
                error_message=f"refused to delete canary snapshot {canary[:8]} ({why})",
            )
        if error is not None:
            return RunOutcome.failed(error, tried.exit_code)
        violation = NotImmutable(
            f"the site deleted canary snapshot {canary[:8]} when asked: it is not immutable, "
            "though append_only: true says so — whoever holds this host's credentials can "
            "delete every backup there (check the server's --append-only flag, or the "
            "bucket's policy denying deletes: object lock alone does not refuse them)"
        )
        run_log.error("%s: %s", violation.error_class, violation.message)
        return RunOutcome.failed(violation, tried.exit_code)

    return at_site(rt, None, site_name, Operation.IMMUTABILITY, prove, cancel=cancel)
