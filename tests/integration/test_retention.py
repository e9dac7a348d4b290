"""Retention with the real restic: exactly what the policy keeps, scoped to one source;
append-only sites are backed up and never pruned, without errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from firebreak.actions.cycle import run_cycle
from firebreak.actions.retention import apply_retention
from firebreak.actions.runtime import Runtime
from firebreak.history.records import all_runs
from firebreak.outcomes import Status
from firebreak.restic.version import Features, supports
from tests.support.cli import firebreak
from tests.support.servers import RestServer
from tests.support.setup import Setup


def _snapshot_ids(setup: Setup, source: str, site: str) -> list[str]:
    done = firebreak(setup.path, "snapshots", source, "--site", site, "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)
    return [snapshot["id"] for snapshot in entry["snapshots"]]


def test_keep_last_keeps_exactly_that_at_every_site_and_spares_other_sources(setup: Setup) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"], retention={"keep_last": 2})
    setup.source("db", ["a"], paths=[str(setup.source_dir / "docs")])
    rt = setup.runtime()
    for number in range(4):
        (setup.source_dir / "changes.txt").write_text(f"version {number}\n")
        assert run_cycle(rt, "www").status == Status.SUCCESS
    assert run_cycle(rt, "db").status == Status.SUCCESS
    newest = {site: _snapshot_ids(setup, "www", site)[-2:] for site in ("a", "b")}

    runs = apply_retention(rt, "www")

    assert [(r.site, r.status) for r in runs] == [("a", Status.SUCCESS), ("b", Status.SUCCESS)]
    for site in ("a", "b"):
        assert _snapshot_ids(setup, "www", site) == newest[site]
    assert len(_snapshot_ids(setup, "db", "a")) == 1, "another source's snapshot was forgotten"


@pytest.mark.restic_matrix
def test_forget_lists_what_it_keeps_and_why_and_what_it_removes(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"], retention={"keep_last": 1, "keep_daily": 7})
    rt = setup.runtime()
    for number in range(3):
        (setup.source_dir / "changes.txt").write_text(f"version {number}\n")
        assert run_cycle(rt, "www").status == Status.SUCCESS
    ids = [snapshot[:8] for snapshot in _snapshot_ids(setup, "www", "a")]

    dry = firebreak(setup.path, "forget", "www", "--dry-run", timeout=120)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    lines = dry.stdout.splitlines()
    # Newest first; a kept one says which rules keep it (restic's own words). From 0.17,
    # restic also keeps the oldest snapshot while keep_daily has room for more days.
    oldest_kept = supports(rt.restic_version, Features.FORGET_KEEPS_OLDEST)
    assert lines[0] == (
        "a: would forget 1 snapshot, keeps 2"
        if oldest_kept
        else "a: would forget 2 snapshots, keeps 1"
    )
    assert lines[1].split()[:2] == ["keep", ids[2]]
    assert "last snapshot" in lines[1] and "daily snapshot" in lines[1]
    assert lines[2].split()[:2] == ["remove", ids[1]]
    assert lines[3].split()[:2] == ["keep" if oldest_kept else "remove", ids[0]]
    if oldest_kept:
        assert "oldest daily snapshot" in lines[3]
    assert len(lines) == 4
    assert len(_snapshot_ids(setup, "www", "a")) == 3, "a dry run deleted something"

    done = firebreak(setup.path, "forget", "www", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = [ids[0], ids[2]] if oldest_kept else [ids[2]]
    assert done.stdout.splitlines()[0] == (
        "a: forgot 1 snapshot, keeps 2" if oldest_kept else "a: forgot 2 snapshots, keeps 1"
    )
    assert [line.split()[:2] for line in done.stdout.splitlines()[1:]] == [
        ["keep", ids[2]],
        ["removed", ids[1]],
        ["keep" if oldest_kept else "removed", ids[0]],
    ]
    assert [snapshot[:8] for snapshot in _snapshot_ids(setup, "www", "a")] == kept


def _three_snapshots_beside_a_vault(setup: Setup, vault: RestServer, *, declared: bool) -> Runtime:
    """Site a and an append-only REST site 'vault' (declared so or not), keep_last 1, three
    backups at both."""
    setup.local_site("a")
    setup.rest_site("vault", vault, **({"append_only": True} if declared else {}))
    setup.source("www", ["a", "vault"], retention={"keep_last": 1})
    rt = setup.runtime()
    for number in range(3):
        (setup.source_dir / "changes.txt").write_text(f"version {number}\n")
        assert run_cycle(rt, "www").status == Status.SUCCESS
    return rt


def test_an_append_only_site_is_backed_up_and_never_pruned(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    _three_snapshots_beside_a_vault(setup, rest_server_factory(append_only=True), declared=True)

    done = firebreak(setup.path, "forget", "www", timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "vault: skipped: the site is append-only (append_only: true)" in done.stdout
    assert len(_snapshot_ids(setup, "www", "a")) == 1
    assert len(_snapshot_ids(setup, "www", "vault")) == 3


@pytest.mark.restic_matrix
def test_a_site_that_refuses_deletes_is_found_append_only_and_skipped_at_once(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    """Not declared append_only: the first refused delete ends the run (restic alone would
    retry it for 45 s or more) and the run is skipped, with the reason, not failed."""
    vault = rest_server_factory(append_only=True)
    rt = _three_snapshots_beside_a_vault(setup, vault, declared=False)

    done = firebreak(setup.path, "forget", "www", timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    [vault] = [line for line in done.stdout.splitlines() if line.startswith("vault:")]
    assert vault.startswith("vault: skipped: DeletionRefused: the site refused to delete"), vault
    assert "403 Forbidden" in vault
    assert "declare append_only: true" in vault
    [run] = [r for r in all_runs(rt.engine) if r.operation == "forget" and r.site == "vault"]
    # restic 0.14 retries a refused delete for about 45 s: it is stopped at the first refusal
    # (130). 0.18 and later do not retry it, and exit 3 by themselves, or 1 when the stop at
    # the refusal comes first.
    assert run.exit_code in (130, 3, 1)
    assert (run.duration_seconds or 0) < 30, "restic was left to retry the refused delete"
    assert len(_snapshot_ids(setup, "www", "a")) == 1
    assert len(_snapshot_ids(setup, "www", "vault")) == 3
    # restic was stopped politely: it removed its own lock, so the next backup runs at once.
    assert run_cycle(rt, "www").status == Status.SUCCESS
