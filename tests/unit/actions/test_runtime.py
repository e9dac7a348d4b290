"""The runtime's run slots: one limit on restic processes, kept across a reload."""

from __future__ import annotations

import threading
import time

from firebreak.actions.runtime import RunSlots


def _hold(slots: RunSlots, started: threading.Event, release: threading.Event) -> None:
    with slots:
        started.set()
        release.wait(10)


def test_slots_block_at_the_limit_and_a_resize_keeps_the_runs_already_holding_one() -> None:
    slots = RunSlots(2)
    release = threading.Event()
    holders = []
    for _ in range(2):
        started = threading.Event()
        thread = threading.Thread(target=_hold, args=(slots, started, release), daemon=True)
        thread.start()
        assert started.wait(5)
        holders.append(thread)
    assert slots.busy == 2

    # A reload to the same (or a lower) limit: a new run must still wait for the old ones.
    slots.resize(1)
    waiting = threading.Event()
    got = threading.Event()

    def newcomer() -> None:
        waiting.set()
        with slots:
            got.set()

    threading.Thread(target=newcomer, daemon=True).start()
    assert waiting.wait(5)
    time.sleep(0.3)
    assert not got.is_set() and slots.busy == 2
    # A reload that raises the limit lets it in while both old runs go on.
    slots.resize(3)
    assert got.wait(5)
    release.set()
    for thread in holders:
        thread.join(5)
    assert slots.busy == 0
