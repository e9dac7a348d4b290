"""History retention (``database.keep_runs``): this host's runs older than that leave the
history in small batches, each its own short transaction, so backups recording their runs
meanwhile wait at most one batch. What a series points at stays (history/series.py)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import Engine

from firebreak.clock import utcnow
from firebreak.history.records import prune_runs

log = logging.getLogger(__name__)

BATCH = 1000
# Between two batches: another writer (a run ending) gets the database.
PAUSE_SECONDS = 0.05


def prune_history(
    engine: Engine, host: str, keep: timedelta, cancel: threading.Event | None = None
) -> int:
    """Prune this host's runs that started more than ``keep`` ago; returns how many went."""
    before = utcnow() - keep
    pruned = 0
    while cancel is None or not cancel.is_set():
        gone = prune_runs(engine, host=host, before=before, batch=BATCH)
        if not gone:
            break
        pruned += gone
        if cancel is not None:
            cancel.wait(PAUSE_SECONDS)
    if pruned:
        log.info("pruned %d runs older than %s from the history of %s", pruned, before, host)
    return pruned
