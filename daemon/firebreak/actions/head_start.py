"""A restore's restic, started before the rest of firebreak is imported.

restic takes about a second to open a repository and plan a restore before it writes a byte,
and ``firebreak restore`` takes half a second more to import the history's and the
terminal's libraries and record the run. When the running daemon says which site the restore
starts with and which snapshot its history holds there (its control socket), the command
starts that restic at once, from the config alone, and imports the rest while restic works.

The restore then takes that restic over only if it would have started the very same one (the
same argv, environment and password: ``HeadStart.adopt``); otherwise it is stopped and its
staging directory removed. A head start changes when the first byte is written, never what
is restored. This module imports nothing of the history's: it must stay light.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from firebreak.config.model import Config
from firebreak.daemon.control import ask
from firebreak.restic import commands, runner
from firebreak.restic.access import resolve_site
from firebreak.restic.commands import SiteRestic
from firebreak.restic.program import detect_version

log = logging.getLogger(__name__)

# A restic nobody took over has only read: a second to leave on SIGINT (and remove its lock),
# then SIGKILL (restic 0.14 ignores SIGINT while it waits on a dead site).
DISCARD_GRACE = 1.0
# A daemon answers in milliseconds; one that does not is busy or hung, and the restore
# (which needs no answer) goes on without one.
ASK_SECONDS = 1.0
_SNAPSHOT_ID = re.compile(r"[0-9a-f]{8,64}")


def staging_for(target: Path, site: str) -> Path:
    """Where a restore from site is written before it is moved into target."""
    return target.parent / f".{target.name}.firebreak-{site}"


@dataclass
class HeadStart:
    """restic restoring into a site's staging directory, started before its run."""

    site: str
    invocation: runner.Invocation
    process: subprocess.Popen[bytes]
    staging: Path
    # Taken over by a run, or discarded: either way, no longer this object's to give or stop.
    settled: bool = False

    def adopt(self, site: str, invocation: runner.Invocation) -> subprocess.Popen[bytes] | None:
        """This restic, for the run that would start exactly this invocation at site;
        None otherwise, and then it is stopped first (it may be writing where that run will)."""
        if self.settled:
            return None
        if site == self.site and invocation == self.invocation:
            self.settled = True
            return self.process
        log.debug("restore from %s: the restic started ahead was not the one needed", site)
        self.discard()
        return None

    def discard(self) -> None:
        """Stop it and remove what it wrote, unless a run took it over."""
        if self.settled:
            return
        self.settled = True
        runner.discard(self.process, DISCARD_GRACE)
        shutil.rmtree(self.staging, ignore_errors=True)


def head_start(
    config: Config, source: str, site: str | None, target: Path, include: tuple[str, ...]
) -> HeadStart | None:
    """restic restoring the newest snapshot recorded at the site the restore starts with, as
    the running daemon names them; None when no daemon runs this config file, it names none,
    or restic cannot be started this way (the restore then finds out, and says so)."""
    if not target.parent.is_dir():
        return None  # the restore creates it, and says so if it cannot
    answer = ask(
        config.state_dir,
        {"ask": "restore", "config": config.fingerprint, "source": source, "site": site},
        "restore",
        ASK_SECONDS,
    )
    if answer is None:
        return None
    first, snapshot = answer.get("site"), answer.get("snapshot")
    if (
        not isinstance(first, str)
        or first not in config.sources[source].sites
        or (site is not None and first != site)
        or not isinstance(snapshot, str)
        or not _SNAPSHOT_ID.fullmatch(snapshot)
    ):
        log.debug("the daemon named no snapshot to restore %s from: %s", source, answer)
        return None
    staging = staging_for(target, first)
    try:
        access = resolve_site(first, config.sites[first])
        at = SiteRestic.of(config, access, os.environ, detect_version(config.restic.binary))
        invocation = commands.restore(
            at, snapshot=snapshot, target=staging, include=include, verify=True
        )
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        process = runner.start(invocation)
    except Exception as exc:  # whatever it is, the restore meets it too and says it there
        shutil.rmtree(staging, ignore_errors=True)
        log.debug("restore of %s: restic not started ahead: %r", source, exc)
        return None
    log.info("restore of %s: restic started at site %s, snapshot %s", source, first, snapshot)
    return HeadStart(first, invocation, process, staging)
