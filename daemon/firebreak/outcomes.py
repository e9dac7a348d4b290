"""The words every run is recorded in: what it did (``Operation``), how it ended (``Status``)
and why it failed (a ``Failure`` class).

The history stores them as strings (``runs.operation``, ``runs.status``, ``runs.error_class``).
Whatever reads them back (retries, stale-lock cleanup, freshness and damage, the metrics, the
CLI) asks this module what a recorded name means, through the class's traits, instead of
keeping a list of names of its own.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class Operation(enum.StrEnum):
    """What a run did at a site."""

    BACKUP = "backup"
    INIT = "init"  # restic init, when a backup found no repository (init: auto)
    UNLOCK = "unlock"  # restic unlock, after a run that was stopped or met a lock
    FORGET = "forget"  # retention: restic forget --prune (--prune apart where hosts share it)
    PRUNE = "prune"  # restic prune, once per retention schedule where hosts share a repository
    CHECK = "check"  # restic check (the whole repository, whichever source it serves)
    DRILL = "drill"  # a restore drill: a sample restored and verified
    RESTORE = "restore"
    RESET = "reset"  # firebreak site reset: an operator records the repository a site holds
    # An append_only site proven to refuse deletes: a canary snapshot written, then forgotten
    IMMUTABILITY = "immutability"


class Status(enum.StrEnum):
    """How a run (or a cycle) ended; ``running`` until it does."""

    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # nothing to do there, on purpose (retention at an append-only site)


FINAL_STATUSES = (
    Status.SUCCESS,
    Status.PARTIAL,
    Status.FAILED,
    Status.INTERRUPTED,
    Status.SKIPPED,
)


class Failure(Exception):
    """Why a run did not do its job. ``error_class`` is the name the history records: the
    class's own name unless it says otherwise (names already in databases never change).

    The traits say what a recorded failure means for what comes next:
    ``transient``: it may go away by itself, so a retry may help;
    ``leaves_lock``: restic was stopped or met a lock, so ``restic unlock`` runs before the
    next run at that site;
    ``judges_data``: the site's data was read and found bad, so the site is damaged;
    ``judges_immutability``: the site accepted a delete it is declared to refuse;
    ``loses_site``: the repository the site held is gone or another one stands in its place,
    so the site is lost until it comes back or an operator resets it.
    """

    error_class: ClassVar[str] = "Failure"
    summary: ClassVar[str] = "the run failed"
    status: ClassVar[Status] = Status.FAILED
    transient: ClassVar[bool] = False
    leaves_lock: ClassVar[bool] = False
    judges_data: ClassVar[bool] = False
    judges_immutability: ClassVar[bool] = False
    loses_site: ClassVar[bool] = False

    _by_name: ClassVar[dict[str, type[Failure]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "error_class" not in cls.__dict__:
            cls.error_class = cls.__name__
        Failure._by_name[cls.error_class] = cls

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def failure_named(error_class: str | None) -> type[Failure] | None:
    """The class behind a recorded ``error_class``, or None (none recorded, or unknown)."""
    return None if error_class is None else Failure._by_name.get(error_class)


def is_transient(error_class: str | None) -> bool:
    """Whether a recorded failure may go away by itself (worth a retry)."""
    kind = failure_named(error_class)
    return kind is not None and kind.transient


def leaves_stale_lock(error_class: str | None) -> bool:
    """Whether a recorded failure calls for ``restic unlock`` before the next run there."""
    kind = failure_named(error_class)
    return kind is not None and kind.leaves_lock


def verdicts() -> tuple[str, ...]:
    """The recorded names of failures that still answer what the run asked: the site's data
    is bad, or it is not immutable."""
    return tuple(
        sorted(
            name
            for name, kind in Failure._by_name.items()
            if kind.judges_data or kind.judges_immutability
        )
    )


def site_losses() -> tuple[str, ...]:
    """The recorded names of failures that found a site's repository lost."""
    return tuple(sorted(name for name, kind in Failure._by_name.items() if kind.loses_site))


# -- restic's failures, as restic/errors.py classifies them ------------------------------


class ResticError(Failure):
    """A restic run that did not do its job (classified from its exit code and output)."""

    error_class = "ResticFailed"
    summary = "restic failed"


class ResticFailed(ResticError):
    """restic failed in a way firebreak has no better name for."""


class ResticUnavailable(ResticError):
    """The restic program itself cannot be used (missing, too old)."""

    summary = "restic cannot be run"


class RepositoryNotFound(ResticError):
    summary = "no restic repository at the site"


class WrongPassword(ResticError):
    summary = "wrong password for the repository"


class RepositoryLocked(ResticError):
    summary = "the repository is locked by another restic"
    transient = True
    leaves_lock = True


class SiteUnreachable(ResticError):
    summary = "the site cannot be reached"
    transient = True


class SiteServerError(ResticError):
    """The site answered, with a server error (HTTP 5xx): its server is failing."""

    summary = "the site's server fails (HTTP 5xx)"
    transient = True


class AccessDenied(ResticError):
    """The site answered, but refused us: credentials, permissions, a certificate."""

    summary = "the site refused access"


class SiteFull(ResticError):
    """The site's storage has no room left (a full disk, a quota): what is already stored
    there stays, the new snapshot is not written."""

    summary = "the site's storage is full"


class SiteReadOnly(ResticError):
    """The site's storage refuses every write (a filesystem remounted read-only after an
    error, say): restic cannot even take its lock."""

    summary = "the site's storage is read-only"


class SourceMissing(ResticError):
    summary = "none of the source's paths exist"


class PartialBackup(ResticError):
    """Exit 3: a snapshot was written, but some source files could not be read."""

    summary = "some files could not be read"


class Timeout(ResticError):
    summary = "the run took longer than the site's timeout"
    transient = True
    leaves_lock = True


class Stalled(Timeout):
    summary = "the run showed no progress for longer than the site's stall_timeout"


class Interrupted(ResticError):
    """Stopped on request (Ctrl-C, SIGTERM, a daemon that stopped or was killed)."""

    summary = "the run was interrupted"
    status = Status.INTERRUPTED
    leaves_lock = True


class DeletionRefused(ResticError):
    """The site keeps what it has and refuses every delete: an append-only (or object-locked)
    repository that the config does not declare ``append_only: true``."""

    summary = "the site refuses to delete anything: it is append-only"


# -- firebreak's own verdicts ---------------------------------------------------------------


class SiteConfigError(Failure):
    """A reference in the site's config cannot be resolved now (a file, a variable)."""

    error_class = "ConfigError"
    summary = "the site's config refers to something missing"


class SnapshotNotFound(Failure):
    summary = "the site holds no such snapshot of the source"


class CheckFailed(Failure):
    """restic check read the repository and said it contains errors."""

    summary = "restic check found the repository damaged"
    judges_data = True


class DrillFailed(Failure):
    """A restore drill could not restore its sample, or the bytes came back wrong."""

    summary = "a restore drill found the site's data bad"
    judges_data = True


class NotImmutable(Failure):
    """A site declared ``append_only: true`` let firebreak delete the canary snapshot it
    wrote there: whoever holds this host's credentials can delete every backup there too."""

    summary = "the site accepted a delete: it is not immutable, though declared append-only"
    judges_immutability = True


class DrillScratchFailed(Failure):
    """The drill's own scratch disk failed it (full, read-only): nothing about the site."""

    summary = "the drill could not write its scratch copy"


class RepositoryLost(Failure):
    """The site held a repository firebreak wrote to, and now there is none: a disk not
    mounted, a directory emptied, a bucket deleted. Nothing is created in its place."""

    summary = "the site's repository is gone"
    loses_site = True


class RepositoryReplaced(Failure):
    """Another repository stands where the one firebreak wrote to was (a new ``restic init``
    at the same URL, a bucket handed back by a provider): its snapshots are not the site's."""

    summary = "another repository stands in place of the site's"
    loses_site = True


class HookFailed(Failure):
    """A hook before the cycle failed or ran past its timeout: no backup ran."""

    summary = "a before hook failed"


class DumpFailed(Failure):
    """The source's dump (a database, a command's output) failed or was cut short: no backup
    of a truncated dump ran, at any site."""

    summary = "the dump failed"


class HistoryUnavailable(Failure):
    """The run history stopped answering while the run needed it (to know the site's
    repository before restic ran): the run ended there. Recorded once the history is back."""

    summary = "the run history did not answer"
    transient = True


class InternalError(Failure):
    """firebreak itself failed during the run (the log has the traceback)."""

    summary = "firebreak failed during the run"
