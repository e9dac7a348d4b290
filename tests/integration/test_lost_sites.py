"""A site that vanished is an alarm, never a fresh empty repository: a disk left unmounted, a
REST directory emptied, an S3 bucket emptied, a repository replaced by a new ``restic init``.
Real restic, real servers, real filesystems."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from firebreak.actions.check import check_site
from firebreak.actions.cycle import run_cycle
from firebreak.actions.runtime import Runtime
from firebreak.history.models import SiteRepository
from firebreak.history.records import all_runs
from firebreak.outcomes import Status
from tests.support.cli import firebreak
from tests.support.history import old_run
from tests.support.mounts import Disk
from tests.support.scrape import samples, value
from tests.support.servers import RestServer, S3Server
from tests.support.setup import PASSWORD, Setup


def _recorded(rt: Runtime, site: str) -> list[SiteRepository]:
    with Session(rt.engine) as session:
        query = select(SiteRepository).where(SiteRepository.site == site)
        return list(session.scalars(query.order_by(SiteRepository.id)))


def _status(setup: Setup) -> dict[str, dict[str, object]]:
    done = firebreak(setup.path, "status", "--json")
    [source] = json.loads(done.stdout)["sources"]
    return {site["site"]: site for site in source["sites"]}


def _scrape(rt: Runtime) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client import CollectorRegistry, generate_latest

    from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs

    registry = CollectorRegistry(auto_describe=False)
    inputs = ScrapeInputs(
        config=lambda: rt.config, engine=lambda: rt.engine, restic_version=lambda: "0.14.0"
    )
    registry.register(FirebreakCollector(inputs))
    return samples(generate_latest(registry).decode())


def _restic(repository: str, *args: str, env: dict[str, str] | None = None) -> str:
    password = Path(os.environ.get("TMPDIR", "/tmp")) / f"pw-{os.getpid()}"
    password.write_text(PASSWORD + "\n")
    environment = {
        "PATH": os.environ["PATH"],
        "RESTIC_REPOSITORY": repository,
        "RESTIC_PASSWORD_FILE": str(password),
        **(env or {}),
    }
    try:
        done = subprocess.run(
            ["restic", *args, "--no-cache"],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        password.unlink()
    return done.stdout


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a disk needs root")
def test_a_disk_left_unmounted_is_lost_not_refilled_and_counts_again_once_mounted(
    setup: Setup, tmp_path: Path
) -> None:
    with Disk(tmp_path / "disk.img", tmp_path / "mnt") as disk:
        setup.local_site("a")
        setup.site("usb", str(disk.path / "restic"))
        setup.source("www", ["a", "usb"])
        rt = setup.runtime()
        assert run_cycle(rt, "www").status == Status.SUCCESS
        [first] = _recorded(rt, "usb")
        assert first.reason is None and len(first.repository_id) == 64

        disk.unmount()  # the mount point is an empty directory on the root filesystem now
        report = run_cycle(rt, "www")
        usb = {run.site: run for run in report.runs}["usb"]
        assert (usb.status, usb.error_class) == (Status.FAILED, "RepositoryLost")
        assert "Nothing was created in its place" in (usb.error_message or "")
        assert list(disk.path.iterdir()) == [], "init: auto created a repository on the wrong disk"
        inits = [run.site for run in all_runs(rt.engine) if run.operation == "init"]
        assert sorted(inits) == ["a", "usb"], "only the first cycle created repositories"
        sites = _status(setup)
        assert sites["usb"]["lost"] and not sites["usb"]["counts"]
        assert sites["usb"]["fresh"], "its last success is recent: lost is not stale"
        assert sites["a"]["lost"] is None and sites["a"]["counts"]
        text = firebreak(setup.path, "status")
        assert "LOST" in text.stdout and "usb: LOST: found " in text.stdout
        found = _scrape(rt)
        assert value(found, "firebreak_site_lost", site="usb") == 1
        assert value(found, "firebreak_site_lost", site="a") == 0
        assert value(found, "firebreak_source_fresh_sites", source="www") == 1

        # Whatever runs there says the same; a check too.
        assert check_site(rt, "usb").error_class == "RepositoryLost"

        disk.mount()
        assert run_cycle(rt, "www").status == Status.SUCCESS
        assert _status(setup)["usb"]["lost"] is None
        assert value(_scrape(rt), "firebreak_site_lost", site="usb") == 0
        assert [row.repository_id for row in _recorded(rt, "usb")] == [first.repository_id]


@pytest.mark.restic_matrix
def test_a_rest_site_whose_directory_was_emptied_is_lost(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    server = rest_server_factory()
    setup.local_site("a")
    setup.rest_site("r", server)
    setup.source("www", ["a", "r"])
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    directory = server.root / f"r-{setup.dir.name}"
    assert (directory / "config").is_file()
    for entry in directory.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    # rclone answers from a stale listing for files removed behind its back (a real
    # rest-server reads the disk): a restart makes it look at the directory again.
    server.stop()
    server.start()

    done = firebreak(setup.path, "backup", "www")
    assert done.returncode == 4
    assert "r: RepositoryLost: the repository at site r is gone" in done.stdout
    assert not (directory / "config").exists(), "a new repository was created at the site"
    assert check_site(rt, "r").error_class == "RepositoryLost"


def test_an_s3_bucket_emptied_behind_firebreaks_back_is_lost(
    setup: Setup, s3_server: S3Server
) -> None:
    import boto3

    setup.local_site("a")
    setup.s3_site("s3", s3_server)
    setup.source("www", ["a", "s3"])
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    bucket = setup.sites["s3"]["repository"].rsplit("/", 1)[-1]
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=S3Server.ACCESS_KEY_ID,
        aws_secret_access_key=S3Server.SECRET_ACCESS_KEY,
        region_name=S3Server.REGION,
    )
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})

    report = run_cycle(rt, "www")
    s3 = {run.site: run for run in report.runs}["s3"]
    assert (s3.status, s3.error_class) == (Status.FAILED, "RepositoryLost")
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


@pytest.mark.restic_matrix
def test_a_repository_replaced_by_a_new_init_is_found_and_written_to_no_more(
    setup: Setup,
) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    [original] = _recorded(rt, "b")
    repository = str(setup.dir / "repo-b")
    shutil.rmtree(repository)
    _restic(repository, "init")  # someone else's repository, same place, same password

    first = {run.site: run for run in run_cycle(rt, "www").runs}["b"]
    assert (first.status, first.error_class) == (Status.FAILED, "RepositoryReplaced")
    assert original.repository_id[:8] in (first.error_message or "")
    assert first.snapshot_id is None
    # The first backup could only tell once restic had opened it; the next ones write nothing.
    written = len(json.loads(_restic(repository, "snapshots", "--json")))
    again = {run.site: run for run in run_cycle(rt, "www").runs}["b"]
    assert again.error_class == "RepositoryReplaced"
    assert len(json.loads(_restic(repository, "snapshots", "--json"))) == written
    assert _status(setup)["b"]["lost"].startswith("found ")  # type: ignore[union-attr]

    # The operator decides: the new repository is the site's from now on.
    reset = firebreak(setup.path, "site", "reset", "b", "--reason", "disk replaced, ticket 42")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert reset.stdout.startswith("site b: repository ")
    assert f"(it held {original.repository_id[:8]} until now): disk replaced" in reset.stdout
    assert "the next backup there writes a full copy" in reset.stdout
    rows = _recorded(rt, "b")
    assert [row.reason for row in rows] == [None, "disk replaced, ticket 42"]
    assert rows[1].repository_id != original.repository_id and rows[1].run_id is not None
    assert run_cycle(rt, "www").status == Status.SUCCESS
    assert _status(setup)["b"]["lost"] is None


def test_a_reset_creates_a_repository_where_there_is_none_and_needs_a_reason(
    setup: Setup,
) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    config = setup.write()
    assert firebreak(config, "backup", "www").returncode == 0
    shutil.rmtree(setup.dir / "repo-b")
    assert firebreak(config, "backup", "www").returncode == 4
    assert not (setup.dir / "repo-b").exists()

    # Without --create it says why it will not make one (a disk may be unmounted).
    refused = firebreak(config, "site", "reset", "b", "--reason", "burnt")
    assert refused.returncode == 4 and "add --create" in refused.stderr
    assert not (setup.dir / "repo-b").exists()
    no_reason = firebreak(config, "site", "reset", "b")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    blank = firebreak(config, "site", "reset", "b", "--reason", "  ")
    assert blank.returncode == 2 and "must say why" in blank.stderr
    unknown = firebreak(config, "site", "reset", "zz", "--reason", "x")
    assert unknown.returncode == 2 and "no site 'zz'" in unknown.stderr

    done = firebreak(config, "site", "reset", "b", "--reason", "burnt", "--create")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " created and recorded " in done.stdout
    assert (setup.dir / "repo-b" / "config").is_file()
    assert firebreak(config, "backup", "www").returncode == 0


def test_another_host_writing_to_the_same_repository_does_not_refill_it(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    server = rest_server_factory()
    setup.local_site("a")
    setup.rest_site("shared", server)  # a server both hosts reach
    setup.source("www", ["a", "shared"])
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    repository = server.root / f"shared-{setup.dir.name}"
    shutil.rmtree(repository)
    server.stop()  # rclone answers from a stale listing otherwise (see above)
    server.start()
    other = setup.runtime()
    other.host = "another-host.invalid"  # a second host of the fleet, same history database
    runs = {run.site: run for run in run_cycle(other, "www").runs}
    assert runs["shared"].error_class == "RepositoryLost"
    assert not repository.exists()
    # Its own local path is its own disk, not the first host's: created there, not lost.
    assert runs["a"].status == Status.SUCCESS and runs["a"].repository_initialized is False


def test_a_history_from_before_repositories_were_recorded_is_checked_before_it_is_trusted(
    setup: Setup,
) -> None:
    from alembic import command

    from firebreak.history.database import alembic_config, make_engine, upgrade

    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    config = setup.load()
    # An older firebreak's history (revision 0001) and repositories: written with plain
    # restic, recorded with its runs.
    history = Path(config.state_dir) / "firebreak.db"
    history.parent.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{history}")
    command.upgrade(alembic_config(engine), "0001")
    engine.dispose()
    for site in ("a", "b"):
        repository = str(setup.dir / f"repo-{site}")
        _restic(repository, "init")
        _restic(repository, "backup", str(setup.source_dir), "--host", "old")
    snapshot = {
        site: json.loads(_restic(str(setup.dir / f"repo-{site}"), "snapshots", "--json"))[0]["id"]
        for site in ("a", "b")
    }
    engine = make_engine(f"sqlite:///{history}")
    for site in ("a", "b"):
        old_run(engine, site, Status.SUCCESS, host=_host(), snapshot_id=snapshot[site][:8])
    upgrade(engine)
    engine.dispose()
    # Then, as the old init: auto would have done at a lost site: b is a new repository.
    shutil.rmtree(setup.dir / "repo-b")
    _restic(str(setup.dir / "repo-b"), "init")

    rt = setup.runtime()
    runs = {run.site: run for run in run_cycle(rt, "www").runs}
    assert runs["a"].status == Status.SUCCESS
    assert (runs["b"].status, runs["b"].error_class) == (Status.FAILED, "RepositoryReplaced")
    assert f"does not hold snapshot {snapshot['b'][:8]}" in (runs["b"].error_message or "")
    assert json.loads(_restic(str(setup.dir / "repo-b"), "snapshots", "--json")) == []
    assert [row.site for row in _recorded(rt, "a")] == ["a"] and _recorded(rt, "b") == []


def _host() -> str:
    import socket

    return socket.gethostname()


def test_a_restore_never_takes_data_from_a_lost_or_replaced_site(setup: Setup) -> None:
    setup.local_site("a")
    setup.local_site("b")
    setup.source("www", ["a", "b"])
    config = setup.write()
    assert firebreak(config, "backup", "www").returncode == 0
    repository = str(setup.dir / "repo-b")
    shutil.rmtree(repository)
    _restic(repository, "init")
    stranger = setup.dir / "stranger"
    stranger.mkdir()
    (stranger / "not-ours.txt").write_text("someone else's data\n")
    _restic(repository, "backup", str(stranger), "--tag", "firebreak.source=www")

    # Named explicitly, the replaced site is refused and nothing reaches the target.
    target = setup.dir / "target"
    named = firebreak(config, "restore", "www", "--target", str(target), "--site", "b")
    assert named.returncode == 4, named.stdout + named.stderr
    assert "RepositoryReplaced" in named.stderr
    assert not target.exists() or not any(target.iterdir())
    # Found lost, it is not even tried: the restore comes from a.
    assert firebreak(config, "backup", "www").returncode == 4
    restored = firebreak(config, "restore", "www", "--target", str(setup.dir / "target-2"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "from site a" in restored.stdout
    assert not list((setup.dir / "target-2").rglob("not-ours.txt"))
