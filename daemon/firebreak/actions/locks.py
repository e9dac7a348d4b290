"""The turns that need the history: hosts that share a repository take turns at it
(``repository_turn``, history/coordination.py), and what a run says about the last one done
there. One restic per site on this host is a file lock (actions/flocks.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from firebreak.actions.identity import location
from firebreak.actions.runtime import Runtime
from firebreak.fleet import peers
from firebreak.history.coordination import WaitCancelled, repository_lock
from firebreak.history.latest import newest_since
from firebreak.history.models import Run
from firebreak.outcomes import Interrupted, Operation

log = logging.getLogger(__name__)


@contextmanager
def repository_turn(
    rt: Runtime,
    site: str,
    purpose: str,
    *,
    patience: float | None,
    cancel: threading.Event | None,
) -> Iterator[None]:
    """This host's turn at the site's repository among the hosts sharing it
    (history/coordination.py), waiting for it up to patience seconds (None: until it comes;
    stopped meanwhile: Interrupted), then RepositoryBusy naming the host that holds it. The
    site's own lock is held meanwhile: this host's backups there wait as long."""
    try:
        with repository_lock(
            rt.engine,
            location(rt, site),
            host=rt.host,
            purpose=purpose,
            patience=patience,
            cancel=cancel,
        ):
            yield
    except WaitCancelled as exc:
        raise Interrupted(str(exc)) from None


def done_at_repository(
    rt: Runtime, site: str, operation: Operation, since: datetime, *, verdict: bool = False
) -> Run | None:
    """The newest successful run of the operation (verdict: that reached a verdict) at the
    site's repository since then, by this host or by any host sharing the repository."""
    sharing = peers(rt.engine, rt.host, {site: location(rt, site)}).get(site, [])
    return newest_since(rt.engine, operation, [(rt.host, site), *sharing], since, verdict=verdict)


def when(run: Run) -> str:
    """Who did a run, and when: for the message of the one that skipped it."""
    return f"{run.host} at {run.started_at:%Y-%m-%d %H:%M:%S} UTC"
