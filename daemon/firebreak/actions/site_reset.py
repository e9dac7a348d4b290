"""``firebreak site reset``: an operator's recorded decision about a lost site.

A site whose repository is gone or replaced stays lost (actions/identity.py) until the old
repository comes back or an operator says which repository the site holds from now on: the
one standing there, or (with ``create``) a new one where there is none. The decision is a run
of its own (operation ``reset``) and a row in ``site_repositories`` with the operator's
reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from firebreak.actions.identity import expected_repository, location
from firebreak.actions.operation import at_site, create_repository, run_restic
from firebreak.actions.runtime import RunLog, Runtime
from firebreak.history.models import Run
from firebreak.history.records import RunOutcome, record_repository
from firebreak.outcomes import Operation, RepositoryNotFound, ResticFailed, Status
from firebreak.restic import commands
from firebreak.restic.cache import forget_cached
from firebreak.restic.commands import SiteAccess
from firebreak.restic.errors import classify
from firebreak.restic.messages import repository_id

NO_REPOSITORY = (
    "there is no repository at the site. If a disk belongs there, mount it first: a new "
    "repository would land on whatever is mounted now. To make a new one, add --create"
)


@dataclass(frozen=True)
class Reset:
    run: Run
    before: str | None  # the repository recorded there until now
    now: str | None  # the one recorded from now on
    created: bool  # firebreak created it (there was none)


def reset_site(
    rt: Runtime,
    site_name: str,
    reason: str,
    *,
    create: bool = False,
    cancel: threading.Event | None = None,
) -> Reset:
    previous = expected_repository(rt, site_name)
    found: list[str] = []
    created: list[bool] = []

    def reset(access: SiteAccess, log: RunLog) -> RunOutcome:
        at = rt.restic_at(access)
        asked = run_restic(rt, commands.cat_config(at), access, cancel)
        error = classify(asked)
        if isinstance(error, RepositoryNotFound):
            if not create:
                return RunOutcome.failed(RepositoryNotFound(NO_REPOSITORY), asked.exit_code)
            log.warning("no repository at the site: creating one")
            failed = create_repository(rt, None, access, None, cancel)
            if failed is not None:
                return failed
            created.append(True)
            asked = run_restic(rt, commands.cat_config(at), access, cancel)
            error = classify(asked)
        if error is not None:
            return RunOutcome.failed(error, asked.exit_code)
        identity = repository_id(asked)
        if identity is None:
            return RunOutcome.failed(ResticFailed("restic cat config printed no repository id"))
        rt.unwritten.flush(rt.engine)  # a reset that started while the history was away
        run_id = None if log.run_id is None else rt.unwritten.real(log.run_id)
        record_repository(
            rt.engine,
            host=rt.host,
            site=site_name,
            repository=location(rt, site_name),
            repository_id=identity,
            run_id=run_id,
            reason=reason,
        )
        rt.recalled[location(rt, site_name)] = identity
        forget_cached(at.cache_dir, keep=identity)  # the old repository's cache is of no use
        found.append(identity)
        log.warning("the site holds repository %s from now on: %s", identity[:8], reason)
        return RunOutcome(Status.SUCCESS, exit_code=0, repository_initialized=bool(created))

    run = at_site(rt, None, site_name, Operation.RESET, reset, cancel=cancel)
    return Reset(run, previous, found[0] if found else None, bool(created))
