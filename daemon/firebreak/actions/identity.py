"""Which repository a site holds, and whether it is still the one firebreak wrote to.

restic keeps a cache directory per repository, named by the repository's id. Each site has a
cache of its own (``Config.site_cache_dir``), so the directories there after a run say which
repository the run opened, at no cost: asking restic (``restic cat config``) would open the
repository a second time, half a second of key derivation per site and cycle.

The repository a site's first successful backup wrote to is recorded (``site_repositories``).
From then on, a missing repository at the site is **lost** and is never re-created by
``init: auto``, and a different one is **replaced**: either way the run fails, the site stops
counting toward safety, and it stays so until the repository comes back or an operator
records a new one with ``firebreak site reset``.
"""

from __future__ import annotations

import logging

from firebreak.actions.runtime import Runtime
from firebreak.history.records import (
    RunOutcome,
    had_repository,
    record_repository,
    recorded_repository,
)
from firebreak.outcomes import (
    Operation,
    RepositoryLost,
    RepositoryNotFound,
    RepositoryReplaced,
    Status,
)
from firebreak.restic.cache import cached_repositories, forget_cached
from firebreak.restic.errors import classify
from firebreak.restic.messages import repository_id
from firebreak.restic.result import ResticResult

log = logging.getLogger(__name__)


class Witness:
    """Watches which repository one run at a site opens.

    tidy: the run may clear the site's cache of other repositories first, so that whatever
    is there afterwards was opened by it (not for a restore, which may run beside a backup).
    """

    def __init__(self, rt: Runtime, site: str, *, tidy: bool) -> None:
        self.rt = rt
        self.site = site
        self.cache = rt.config.site_cache_dir(site)
        row = recorded_repository(rt.engine, rt.host, site)
        self.expected = row.repository_id if row is not None else None
        if tidy:
            forget_cached(self.cache, keep=self.expected)

    def recheck(self, asked: ResticResult) -> RunOutcome | None:
        """For a site found lost before: is the recorded repository back? None when it is;
        otherwise how the run ends, without writing anything there."""
        error = classify(asked)
        if isinstance(error, RepositoryNotFound):
            return self.lost(asked.exit_code)
        if error is not None:
            return RunOutcome.failed(error, asked.exit_code)
        found = repository_id(asked)
        if found is not None and found != self.expected:
            return self.replaced(found, asked.exit_code)
        return None

    def judge(self, operation: Operation, outcome: RunOutcome, run_id: int) -> RunOutcome:
        """The run's outcome in the light of which repository it met."""
        if outcome.error_class == RepositoryNotFound.error_class and had_repository(
            self.rt.engine, self.rt.host, self.site
        ):
            return self.lost(outcome.exit_code)
        seen = cached_repositories(self.cache)
        if self.expected is not None:
            others = seen - {self.expected}
            if others:
                return self.replaced(sorted(others)[0], outcome.exit_code)
        elif (
            operation == Operation.BACKUP
            and outcome.status in (Status.SUCCESS, Status.PARTIAL)
            and len(seen) == 1
        ):
            [found] = seen
            record_repository(
                self.rt.engine,
                host=self.rt.host,
                site=self.site,
                repository_id=found,
                run_id=run_id,
            )
            log.info("site %s: recorded its repository %s", self.site, found[:8])
        return outcome

    def lost(self, exit_code: int | None) -> RunOutcome:
        return RunOutcome.failed(
            RepositoryLost(
                f"the repository at site {self.site} is gone: firebreak wrote backups there, "
                "and now there is none. Nothing was created in its place. Bring it back (mount "
                "the disk, restore the bucket); if it is lost for good, record a new one with "
                f"`firebreak site reset {self.site} --reason ...`"
            ),
            exit_code,
        )

    def replaced(self, found: str, exit_code: int | None) -> RunOutcome:
        expected = (self.expected or "?")[:8]
        return RunOutcome.failed(
            RepositoryReplaced(
                f"another repository (id {found[:8]}) stands at site {self.site} in place of "
                f"the one firebreak wrote to (id {expected}): its snapshots are not this "
                "site's. Find out who created it; if the old one is lost for good, record the "
                f"new one with `firebreak site reset {self.site} --reason ...`"
            ),
            exit_code,
        )
