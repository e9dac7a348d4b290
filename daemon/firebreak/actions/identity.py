"""Which repository a site holds, and whether it is still the one firebreak wrote to.

restic keeps a cache directory per repository, named by the repository's id. Each site has a
cache of its own (``Config.site_cache_dir``), so the directories there after a run say which
repository the run opened, at no cost: asking restic (``restic cat config``) would open the
repository a second time, half a second of key derivation per site and cycle.

The repository id found at a location (a site's normalised URL or path) the first time a
backup writes there is recorded (``site_repositories``), for every host and site name that
uses that location. From then on a missing repository there is **lost** and is never
re-created by ``init: auto``, and a different one is **replaced**: the run fails, the site
stops counting toward safety, nothing more is written there, and it stays so until the
repository comes back or an operator records a new one with ``firebreak site reset``.
"""

from __future__ import annotations

import logging

from firebreak.actions.runtime import Runtime
from firebreak.history.records import (
    RunOutcome,
    had_repository,
    last_written_snapshot,
    record_repository,
    recorded_repository,
)
from firebreak.history.unwritten import HISTORY_ERRORS
from firebreak.outcomes import (
    Operation,
    RepositoryLost,
    RepositoryNotFound,
    RepositoryReplaced,
    Status,
)
from firebreak.placement.targets import location as repository_location
from firebreak.placement.targets import site_target
from firebreak.restic.cache import cached_repositories, forget_cached
from firebreak.restic.errors import classify
from firebreak.restic.messages import repository_id
from firebreak.restic.result import ResticResult

log = logging.getLogger(__name__)


def location(rt: Runtime, site: str) -> str:
    """The site's repository, normalised and without credentials, qualified by this host where
    it is this host's own (placement/targets.py): what identities are kept by."""
    return repository_location(site_target(rt.config.sites[site]), rt.host)


def expected_repository(rt: Runtime, site: str) -> str | None:
    """The repository recorded at the site's location. While the history is away: the one
    this process last read there (a daemon reads every site's at start); a site it never
    read raises the history's error, and the run waits for the history."""
    where = location(rt, site)
    try:
        row = recorded_repository(rt.engine, where)
    except HISTORY_ERRORS:
        if where in rt.recalled:
            return rt.recalled[where]
        raise
    rt.recalled[where] = None if row is None else row.repository_id
    return rt.recalled[where]


def recall_repositories(rt: Runtime) -> None:
    """Read the repository recorded at every site (a daemon starting), so that backups go
    on knowing them if the history goes away later; what it cannot read now, a run reads."""
    try:
        for site in rt.config.sites:
            expected_repository(rt, site)
    except HISTORY_ERRORS:
        return


def stranger_at(rt: Runtime, site: str) -> str | None:
    """A repository restic opened at the site that is not the one recorded there, or None."""
    expected = expected_repository(rt, site)
    if expected is None:
        return None
    others = cached_repositories(rt.config.site_cache_dir(site)) - {expected}
    return min(others) if others else None


class Witness:
    """Watches which repository one run at a site opens.

    tidy: the run holds the site's lock, so it may clear the site's cache of repositories
    other than the recorded one first: whatever else is there afterwards was opened by it.
    (A restore does not hold the lock and may run beside a backup: it only looks.)
    """

    def __init__(self, rt: Runtime, site: str, *, tidy: bool) -> None:
        self.rt = rt
        self.site = site
        self.repository = location(rt, site)
        self.cache = rt.config.site_cache_dir(site)
        self.expected = expected_repository(rt, site)
        self.tidy = tidy
        if tidy and self.expected is not None:
            forget_cached(self.cache, keep=self.expected)
        self.before = cached_repositories(self.cache)

    def unconfirmed_snapshot(self) -> str | None:
        """After an upgrade from a firebreak that recorded no repositories: the last snapshot
        this host wrote to the site, which the repository there must still hold before its id
        is trusted. None when there is nothing to confirm."""
        if self.expected is not None:
            return None
        return last_written_snapshot(self.rt.engine, self.rt.host, self.site)

    def recheck(self, asked: ResticResult, *, snapshot: str | None = None) -> RunOutcome | None:
        """Before writing to a site found lost (or not yet confirmed): is the repository the
        site's? None when it is; otherwise how the run ends, without writing anything."""
        error = classify(asked)
        if isinstance(error, RepositoryNotFound):
            return self.lost(asked.exit_code)
        gone = error is not None and any("no matching ID" in line for line in asked.stderr_tail)
        if snapshot is not None and gone:
            return self.replaced(None, asked.exit_code, missing=snapshot)
        if error is not None:
            return RunOutcome.failed(error, asked.exit_code)
        found = repository_id(asked)
        if snapshot is None and found is not None and found != self.expected:
            return self.replaced(found, asked.exit_code)
        return None

    def judge(self, operation: Operation, outcome: RunOutcome, run_id: int) -> RunOutcome:
        """The run's outcome in the light of which repository it met."""
        if outcome.error_class == RepositoryNotFound.error_class and had_repository(
            self.rt.engine, self.repository, self.rt.host, self.site
        ):
            return self.lost(outcome.exit_code)
        seen = cached_repositories(self.cache)
        if self.expected is not None:
            opened = seen if self.tidy else seen - self.before
            others = opened - {self.expected}
            if others:
                return self.replaced(min(others), outcome.exit_code)
        elif operation == Operation.BACKUP and outcome.status in (Status.SUCCESS, Status.PARTIAL):
            new = seen - self.before
            found = new or (seen if len(seen) == 1 else set())
            if len(found) == 1:
                self._record(found.pop(), run_id)
        return outcome

    def _record(self, identity: str, run_id: int) -> None:
        record_repository(
            self.rt.engine,
            host=self.rt.host,
            site=self.site,
            repository=self.repository,
            repository_id=identity,
            run_id=run_id,
        )
        self.rt.recalled[self.repository] = identity
        log.info("site %s: recorded its repository %s", self.site, identity[:8])

    def lost(self, exit_code: int | None) -> RunOutcome:
        return lost(self.site, exit_code)

    def replaced(
        self, found: str | None, exit_code: int | None, *, missing: str | None = None
    ) -> RunOutcome:
        return replaced(self.site, self.expected, found, exit_code, missing=missing)


def lost(site: str, exit_code: int | None) -> RunOutcome:
    """How a run ends that found no repository where the site's was."""
    return RunOutcome.failed(
        RepositoryLost(
            f"the repository at site {site} is gone: firebreak wrote backups there, and now "
            "there is none. Nothing was created in its place. Bring it back (mount the disk, "
            "restore the bucket); if it is lost for good, record a new one with "
            f"`firebreak site reset {site} --reason ... --create`"
        ),
        exit_code,
    )


def replaced(
    site: str,
    expected: str | None,
    found: str | None,
    exit_code: int | None,
    *,
    missing: str | None = None,
) -> RunOutcome:
    """How a run ends that found another repository where the site's was."""
    if missing is not None:
        what = (
            f"the repository at site {site} does not hold snapshot {missing[:8]}, the last one "
            "firebreak wrote there: it is another repository"
        )
    else:
        what = (
            f"another repository (id {(found or '?')[:8]}) stands at site {site} in place of "
            f"the one firebreak wrote to (id {(expected or '?')[:8]})"
        )
    return RunOutcome.failed(
        RepositoryReplaced(
            f"{what}: its snapshots are not this site's. Find out who created it; if the old "
            f"one is lost for good, record the new one with `firebreak site reset {site} "
            "--reason ...`"
        ),
        exit_code,
    )
