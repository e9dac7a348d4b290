"""restic check per site: a corrupted pack fails that site's check, and only that site's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from firebreak.actions.check import check_site, next_subset
from firebreak.actions.cycle import run_cycle
from firebreak.history.records import all_runs
from firebreak.outcomes import Status
from tests.support.cli import firebreak
from tests.support.setup import Setup


def test_a_corrupted_pack_fails_the_check_of_its_site_only(setup: Setup) -> None:
    setup.local_site("good", check_read_data_subsets=1)
    setup.local_site("bad", check_read_data_subsets=1)
    setup.source("www", ["good", "bad"], min_fresh_sites=2)
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    packs = sorted((setup.dir / "repo-bad" / "data").rglob("*"), key=lambda p: p.stat().st_size)
    biggest = [p for p in packs if p.is_file()][-1]
    with biggest.open("r+b") as pack:
        pack.truncate(biggest.stat().st_size // 2)

    done = firebreak(setup.path, "check", "www")

    assert done.returncode == 4, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("good: ok")
    assert lines[1].startswith("bad: failed: CheckFailed: ")


@pytest.mark.restic_matrix
def test_each_check_reads_the_next_part_of_the_data(setup: Setup) -> None:
    setup.local_site("a", check_read_data_subsets=3)
    setup.source("www", ["a"])
    rt = setup.runtime()
    run_cycle(rt, "www")
    seen = []
    for _ in range(4):
        seen.append(next_subset(rt, "a"))
        assert check_site(rt, "a").status == Status.SUCCESS
    assert seen == [(1, 3), (2, 3), (3, 3), (1, 3)]


def test_check_outcomes_reach_the_metrics(setup: Setup) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs
    from tests.support.scrape import samples, value

    setup.local_site("a", check_read_data_subsets=1)
    setup.source("www", ["a"])
    rt = setup.runtime()
    run_cycle(rt, "www")
    run = check_site(rt, "a")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        FirebreakCollector(
            ScrapeInputs(
                config=lambda: rt.config, engine=lambda: rt.engine, restic_version=lambda: "0.14.0"
            )
        )
    )
    found = samples(generate_latest(registry).decode())
    # The check is the site's, recorded and exported with no source of its own.
    assert run.source is None
    assert value(found, "firebreak_last_check_outcome", site="a", outcome="success") == 1
    assert (
        value(found, "firebreak_last_check_success_timestamp_seconds", site="a")
        == run.started_at.timestamp()
    )
    assert not [labels for name, labels in found if "check" in name and ("source", "www") in labels]


def test_a_corrupted_pack_damages_that_site_only_until_drill_and_check_pass(setup: Setup) -> None:
    from tests.support.scrape import samples, value

    setup.local_site("good", check_read_data_subsets=1, drill_files=1000)
    setup.local_site("bad", check_read_data_subsets=1, drill_files=1000)
    setup.source("www", ["good", "bad"], min_fresh_sites=2)
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    for pack in (p for p in (setup.dir / "repo-bad" / "data").rglob("*") if p.is_file()):
        with pack.open("r+b") as handle:  # damage every data pack: whatever the sample, it hits
            handle.seek(pack.stat().st_size // 3)
            handle.write(b"\0" * 64)

    drills = firebreak(setup.path, "drill", "www")
    checks = firebreak(setup.path, "check", "www")

    assert drills.returncode == 4, drills.stdout + drills.stderr
    assert drills.stdout.splitlines()[0].startswith("good: ok, ")
    assert drills.stdout.splitlines()[1].startswith("bad: failed: DrillFailed: ")
    assert checks.returncode == 4
    assert checks.stdout.splitlines()[0].startswith("good: ok")
    assert checks.stdout.splitlines()[1].startswith("bad: failed: ")

    from prometheus_client import CollectorRegistry, generate_latest

    from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        FirebreakCollector(
            ScrapeInputs(
                config=lambda: rt.config, engine=lambda: rt.engine, restic_version=lambda: "0"
            )
        )
    )
    found = samples(generate_latest(registry).decode())
    assert (
        "firebreak_last_drill_success_timestamp_seconds",
        frozenset({("source", "www"), ("site", "good")}),
    ) in found
    assert (
        "firebreak_last_drill_success_timestamp_seconds",
        frozenset({("source", "www"), ("site", "bad")}),
    ) not in found
    assert value(found, "firebreak_last_check_outcome", site="bad", outcome="failed") == 1
    assert value(found, "firebreak_site_damaged", source="www", site="bad") == 1
    assert value(found, "firebreak_site_damaged", source="www", site="good") == 0
    # The check's own verdict, which FirebreakCheckFailing keeps firing on while checks run.
    assert value(found, "firebreak_site_check_damaged", site="bad") == 1
    assert value(found, "firebreak_site_check_damaged", site="good") == 0
    assert value(found, "firebreak_source_fresh_sites", source="www") == 1
    assert value(found, "firebreak_source_safe", source="www") == 0

    # A fresh backup does not make the site count: it reuses the damaged data.
    assert run_cycle(rt, "www").status == Status.SUCCESS
    status = firebreak(setup.path, "status", "--json")
    assert status.returncode == 4, status.stdout + status.stderr
    [www] = json.loads(status.stdout)["sources"]
    good, bad = www["sites"]
    assert good["counts"] and good["damaged"] is None and good["last_drill_success_at"]
    assert bad["fresh"] and not bad["counts"]
    assert bad["damaged"].startswith("restore drill failed ")
    assert "DrillFailed: " in bad["damaged"]
    assert not www["safe"] and www["fresh_sites"] == 1
    text = firebreak(setup.path, "status")
    assert "bad: DAMAGED: restore drill failed" in text.stdout, text.stdout

    # Replaced by a new repository (an operator's recorded decision), drilled and checked
    # again: it counts again.
    shutil.rmtree(setup.dir / "repo-bad")
    reset = firebreak(setup.path, "site", "reset", "bad", "--reason", "packs corrupted", "--create")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert run_cycle(rt, "www").status == Status.SUCCESS
    assert firebreak(setup.path, "drill", "www", "--site", "bad").returncode == 0
    still = json.loads(firebreak(setup.path, "status", "--json").stdout)["sources"][0]
    assert still["sites"][1]["damaged"].startswith("restic check failed "), "check not cleared"
    assert firebreak(setup.path, "check", "www", "--site", "bad").returncode == 0
    healed = firebreak(setup.path, "status", "--json")
    assert healed.returncode == 0, healed.stdout
    assert json.loads(healed.stdout)["sources"][0]["sites"][1]["counts"]


@pytest.mark.restic_matrix
def test_a_full_read_on_demand_finds_what_the_rotating_subset_did_not_read(setup: Setup) -> None:
    setup.local_site("a", check_read_data_subsets=256)
    setup.source("www", ["a"])
    rt = setup.runtime()
    # restic reads, for subset n/N, the data packs whose first id byte modulo N is n-1: with
    # N = 256 the next check reads only packs named 00…. Every other data pack (the big ones:
    # tree packs are a few KiB, and every check reads those) is damaged. One in 256 big packs
    # is named 00…: back up new data until one is not.
    damaged: list[Path] = []
    for attempt in range(4):
        (setup.source_dir / f"more-{attempt}.bin").write_bytes(os.urandom(300_000))
        assert run_cycle(rt, "www").status == Status.SUCCESS
        damaged = [
            pack
            for pack in (setup.dir / "repo-a" / "data").rglob("*")
            if pack.is_file() and not pack.name.startswith("00") and pack.stat().st_size > 100_000
        ]
        if damaged:
            break
    assert damaged
    for pack in damaged:
        with pack.open("r+b") as handle:
            handle.seek(pack.stat().st_size // 3)
            handle.write(b"\0" * 64)

    rotating = firebreak(setup.path, "check", "--site", "a")
    assert rotating.returncode == 0, rotating.stdout + rotating.stderr
    full = firebreak(setup.path, "check", "--site", "a", "--read-all-data")
    assert full.returncode == 4, full.stdout + full.stderr
    assert full.stdout.startswith("a: failed: CheckFailed: ")
    checks = [r for r in all_runs(rt.engine) if r.operation == "check"]
    assert [r.status for r in checks] == [Status.SUCCESS, Status.FAILED]
    assert all(r.source is None for r in checks)
