"""``firebreak site reset``: an operator's recorded decision about a lost site.

A site whose repository is gone or replaced stays lost (actions/identity.py) until the old
repository comes back or an operator says which repository the site holds from now on: the
one standing there, or a new one created on the spot. The decision is a run of its own
(operation ``reset``) and a row in ``site_repositories`` with the operator's reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from firebreak.actions.operation import at_site, run_restic, side_run
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome, record_repository, recorded_repository
from firebreak.outcomes import Operation, RepositoryNotFound, ResticFailed, Status
from firebreak.restic import commands
from firebreak.restic.cache import forget_cached
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import repository_id


@dataclass(frozen=True)
class Reset:
    run: Run
    before: str | None  # the repository the site held until now
    now: str | None  # the one it holds from now on
    created: bool  # firebreak created it (there was none)


def reset_site(
    rt: Runtime, site_name: str, reason: str, cancel: threading.Event | None = None
) -> Reset:
    previous = recorded_repository(rt.engine, rt.host, site_name)
    found: list[str] = []
    created: list[bool] = []

    def reset(access: SiteAccess, log: RunLog) -> RunOutcome:
        at = rt.restic_at(access)
        forget_cached(at.cache_dir)  # nothing the old repository left is of use
        asked = run_restic(rt, commands.cat_config(at), access, cancel)
        error = classify(asked)
        if isinstance(error, RepositoryNotFound):
            log.warning("no repository at the site: creating one")
            init = side_run(rt, Operation.INIT, None, access, commands.init(at), None, cancel)
            if init.status != Status.SUCCESS:
                why = f"creating the repository failed: {init.error_message}"
                status = Status(init.status)
                return RunOutcome(status, error_class=init.error_class, error_message=why)
            created.append(True)
            asked = run_restic(rt, commands.cat_config(at), access, cancel)
            error = classify(asked)
        if error is not None:
            return RunOutcome.failed(error, asked.exit_code)
        identity = repository_id(asked)
        if identity is None:
            return RunOutcome.failed(ResticFailed("restic cat config printed no repository id"))
        record_repository(
            rt.engine,
            host=rt.host,
            site=site_name,
            repository_id=identity,
            run_id=log.run_id,
            reason=reason,
        )
        found.append(identity)
        log.warning("the site holds repository %s from now on: %s", identity[:8], reason)
        return RunOutcome(Status.SUCCESS, exit_code=0, repository_initialized=bool(created))

    run = at_site(rt, None, site_name, Operation.RESET, reset, cancel=cancel)
    return Reset(
        run,
        previous.repository_id if previous is not None else None,
        found[0] if found else None,
        bool(created),
    )
