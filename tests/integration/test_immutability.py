"""Immutability proven, not declared: an append_only site is asked to delete a canary
snapshot, against real REST servers (rclone serve restic, with --append-only and without)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from firebreak.actions.cycle import run_cycle
from firebreak.actions.runtime import Runtime
from firebreak.metrics.collector import FirebreakCollector, ScrapeInputs
from firebreak.outcomes import Status
from firebreak.restic.commands import CANARY_TAG
from tests.support.cli import firebreak
from tests.support.scrape import samples, value
from tests.support.servers import RestServer, S3Server
from tests.support.setup import Setup


def _flags(rt: Runtime, site: str) -> tuple[float | None, float | None]:
    """(firebreak_site_immutable, firebreak_site_not_immutable) for the site, scraped."""
    registry = CollectorRegistry(auto_describe=False)
    inputs = ScrapeInputs(
        config=lambda: rt.config, engine=lambda: rt.engine, restic_version=lambda: "0.14.0"
    )
    registry.register(FirebreakCollector(inputs))
    found = samples(generate_latest(registry).decode())
    return (
        value(found, "firebreak_site_immutable", site=site),
        value(found, "firebreak_site_not_immutable", site=site),
    )


def _vault(setup: Setup, server: RestServer) -> Runtime:
    """Site a, and a REST site 'vault' declared append_only; one backup at both."""
    setup.local_site("a")
    setup.rest_site("vault", server, append_only=True)
    setup.source("www", ["a", "vault"])
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS
    return rt


@pytest.mark.restic_matrix
@pytest.mark.parametrize("server_kind", ["rclone", "rest-server"])
def test_an_append_only_site_refuses_to_delete_the_canary_and_is_proven_immutable(
    setup: Setup, rest_server_factory: Callable[..., RestServer], server_kind: str
) -> None:
    """rclone serve restic --append-only, and restic's own rest-server --append-only."""
    server = rest_server_factory(append_only=True, real=server_kind == "rest-server")
    rt = _vault(setup, server)

    done = firebreak(setup.path, "site", "prove-immutable", timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("vault: immutable: refused to delete canary snapshot "), done
    assert "403 Forbidden" in done.stdout
    [run] = [r for r in setup.runs() if r.operation == "immutability"]
    assert (run.site, run.source, run.status) == ("vault", None, Status.SUCCESS)
    # The canary stays, tagged as no source's: the source's snapshots are what they were.
    canaries = firebreak(setup.path, "restic", "vault", "--", "snapshots", "--tag", CANARY_TAG)
    assert canaries.returncode == 0, canaries.stderr
    assert run.snapshot_id and run.snapshot_id[:8] in canaries.stdout
    listed = firebreak(setup.path, "snapshots", "www", "--site", "vault", "--json")
    assert run.snapshot_id[:8] not in listed.stdout
    assert _flags(rt, "vault") == (1, 0)
    assert _flags(rt, "a") == (0, 0)
    # The scorecard counts the proven site as the source's immutable copy.
    shown = firebreak(setup.path, "status", "--json")
    [source] = json.loads(shown.stdout)["sources"]
    assert source["rules"]["immutable"] == {
        "count": 1,
        "target": 1,
        "ok": True,
        "required": False,
        "detail": "vault",
        "shown": "1/1",
    }
    assert source["rules"]["copies"]["count"] == 2 and not source["rules"]["copies"]["ok"]
    text = firebreak(setup.path, "status").stdout
    assert "3-2-1-1-0: copies 2/3 ✗ · kinds 2/2 ✓ · offsite ?/1 ✗ · immutable 1/1 ✓" in text


def test_a_site_declared_append_only_that_deletes_is_a_violation_that_stays_until_proven(
    setup: Setup, rest_server_factory: Callable[..., RestServer]
) -> None:
    """The server was started without --append-only: the canary is deleted, and the site is
    NotImmutable. A later proof that cannot reach the site changes nothing: only a refused
    delete clears it."""
    server = rest_server_factory(append_only=False)
    setup.top["placement"] = {"enforce": "warn", "require": ["immutable"]}
    rt = _vault(setup, server)

    done = firebreak(setup.path, "site", "prove-immutable", "vault", timeout=180)

    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stdout.startswith("vault: failed: NotImmutable: the site deleted canary "), done
    assert "whoever holds this host's credentials can delete every backup there" in done.stdout
    canaries = firebreak(
        setup.path, "restic", "vault", "--", "snapshots", "--json", "--tag", CANARY_TAG
    )
    assert canaries.returncode == 0 and json.loads(canaries.stdout) == [], canaries
    assert _flags(rt, "vault") == (0, 1)
    # The policy requires an immutable copy: status says it is broken, and why.
    text = firebreak(setup.path, "status").stdout
    assert "immutable* 0/1 ✗" in text
    assert "required immutable BROKEN: 0/1 (no site is proven to refuse deletes)" in text

    server.stop()
    unreachable = firebreak(setup.path, "site", "prove-immutable", "vault", timeout=180)
    assert unreachable.returncode == 4 and "NotImmutable" not in unreachable.stdout
    assert _flags(rt, "vault") == (0, 1)
    # The site is not meant to be immutable after all: no longer declared, no promise broken.
    setup.sites["vault"]["append_only"] = False
    setup.top["placement"] = {"enforce": "warn"}
    assert _flags(setup.runtime(), "vault") == (0, 0)


def test_only_declared_sites_are_proven(setup: Setup) -> None:
    setup.local_site("a")
    setup.source("www", ["a"])
    setup.write()
    done = firebreak(setup.path, "site", "prove-immutable")
    assert done.returncode == 2
    assert "no site in" in done.stderr and "is declared append_only: true" in done.stderr
    done = firebreak(setup.path, "site", "prove-immutable", "a")
    assert done.returncode == 2 and "a: not declared append_only: true" in done.stderr
    done = firebreak(setup.path, "site", "prove-immutable", "nope")
    assert done.returncode == 2 and "no site 'nope'" in done.stderr


def test_an_object_locked_bucket_without_a_deny_policy_is_not_immutable_to_restic(
    setup: Setup, s3_server: S3Server
) -> None:
    """S3 object lock (moto): restic's delete succeeds as a delete marker, and the snapshot is
    gone from restic's view while its locked version stays. For restic that site deletes:
    the proof says NotImmutable, as docs/threat-model.md warns (a policy denying
    s3:DeleteObject to firebreak's keys is what makes it refuse; moto does not enforce
    bucket policies, so that half is not tested here)."""
    import boto3

    setup.local_site("a")
    setup.s3_site("locked", s3_server, append_only=True)
    setup.source("www", ["a", "locked"])
    bucket = setup.sites["locked"]["repository"].rsplit("/", 1)[-1]
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=S3Server.ACCESS_KEY_ID,
        aws_secret_access_key=S3Server.SECRET_ACCESS_KEY,
        region_name=S3Server.REGION,
    )
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    retention = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": retention},
    )
    rt = setup.runtime()
    assert run_cycle(rt, "www").status == Status.SUCCESS

    done = firebreak(setup.path, "site", "prove-immutable", "locked", timeout=180)

    assert done.returncode == 4, done.stdout + done.stderr
    assert "NotImmutable: the site deleted canary snapshot" in done.stdout
    versions = client.list_object_versions(Bucket=bucket, Prefix="snapshots/")
    assert len(versions.get("DeleteMarkers", [])) == 1  # the canary, hidden, not destroyed
    assert len(versions.get("Versions", [])) == 2  # the source's snapshot and the canary
