"""3-2-1-1-0 per source: what each rule counts, from a profile and the history's proof, and
what a config that cannot meet a required rule is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from firebreak.config.model import Config
from firebreak.fleet import HostProfile, SiteProfile, SourceProfile
from firebreak.history.freshness import Proof, SiteFreshness, SourceFreshness
from firebreak.history.models import Run
from firebreak.outcomes import Status
from firebreak.placement.policy import label_violations
from firebreak.scorecard import scorecard

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
WEEK = 7 * 86400.0
DAY = 86400.0


def _run(status: Status = Status.SUCCESS, age_days: float = 1, error: str | None = None) -> Run:
    return Run(
        status=status,
        started_at=NOW - timedelta(days=age_days),
        error_class=error,
        host="web1",
        operation="check",
        site="x",
    )


def _fresh(name: str, fresh: bool = True) -> SiteFreshness:
    return SiteFreshness(name, fresh, NOW, NOW, "success", None, "0" * 64, 1, 60.0)


def _profile(
    sites: dict[str, SiteProfile], require: list[str] | None = None, located: bool = True
) -> HostProfile:
    source = SourceProfile(list(sites), DAY, 2, require=require or [])
    return HostProfile({"www": source}, sites, located=located)


def _site(kind: str, offsite: bool | None = True, **extra: Any) -> SiteProfile:
    return SiteProfile(WEEK, DAY, f"repo-{kind}", kind=kind, offsite=offsite, **extra)


def _proof(**changes: Any) -> Proof:
    sites = ("a", "b", "c")
    fields: dict[str, Any] = {
        "drills": {("www", site): _run() for site in sites},
        "checks": {site: _run() for site in sites},
        "drill_runs": {},
    }
    fields.update(changes)
    return Proof(**fields)


def _rules(profile: HostProfile, fresh: list[SiteFreshness], proof: Proof) -> dict[str, Any]:
    source = SourceFreshness("www", DAY, 2, sum(s.counts for s in fresh), True, fresh)
    card = scorecard(profile, source, proof, NOW)
    return {rule.rule: (rule.count, rule.ok, rule.required, rule.detail) for rule in card.rules}


def test_a_source_that_meets_every_rule() -> None:
    profile = _profile(
        {
            "a": _site("rest/ovh", offsite=False),
            "b": _site("s3/aws"),
            "c": _site("rest/hetzner", append_only=True),
        }
    )
    proof = _proof(immutable={"c": _run()})
    rules = _rules(profile, [_fresh("a"), _fresh("b"), _fresh("c")], proof)
    assert rules == {
        "copies": (3, True, False, "a, b, c"),
        "kinds": (3, True, False, "rest/hetzner, rest/ovh, s3/aws"),
        "offsite": (2, True, False, "b, c"),
        "immutable": (1, True, False, "c"),
        "verified": (0, True, False, ""),
    }


def test_only_fresh_copies_count_and_a_stale_one_takes_its_kind_and_place_with_it() -> None:
    profile = _profile(
        {
            "a": _site("rest/ovh", offsite=False),
            "b": _site("rest/ovh", offsite=False),
            "c": _site("s3/aws", append_only=True),
        },
        require=["offsite", "immutable"],
    )
    proof = _proof(immutable={"c": _run()})
    rules = _rules(profile, [_fresh("a"), _fresh("b"), _fresh("c", fresh=False)], proof)
    assert rules["copies"][:2] == (2, False)
    assert rules["kinds"][:2] == (1, False)
    assert rules["offsite"] == (0, False, True, "every copy is in this host's datacenter")
    assert rules["immutable"] == (0, False, True, "no site is proven to refuse deletes")


def test_immutable_needs_a_refusal_and_offsite_needs_the_hosts_location() -> None:
    sites = {"a": _site("local/me", None), "b": _site("s3/aws", None), "c": _site("b2/b", None)}
    fresh = [_fresh("a"), _fresh("b"), _fresh("c")]
    deleted = _run(Status.FAILED, error="NotImmutable")
    rules = _rules(_profile(sites, located=False), fresh, _proof(immutable={"c": deleted}))
    assert rules["offsite"] == (None, False, False, "this host's location is not set")
    assert rules["immutable"] == (0, False, False, "no site is declared append_only")


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        (
            {"checks": {"a": _run(), "b": _run(), "c": _run(age_days=9)}},
            "c: no passing check for 8 days",
        ),
        (
            {
                "drills": {("www", "a"): _run(), ("www", "b"): _run()},
                "first_success": {("www", "c"): NOW - timedelta(days=10)},
            },
            "c: never a drill",
        ),
        (
            {"checks": {"a": _run(), "b": _run(Status.FAILED, error="CheckFailed"), "c": _run()}},
            "b: the newest check failed (CheckFailed)",
        ),
        ({"lost": {"a": _run(Status.FAILED, error="RepositoryLost")}}, "a: lost"),
    ],
)
def test_verified_counts_every_site_whose_proof_is_missing_old_or_bad(
    changes: dict[str, Any], why: str
) -> None:
    profile = _profile({name: _site(f"rest/{name}") for name in ("a", "b", "c")})
    fresh = [_fresh(name) for name in ("a", "b", "c")]
    count, ok, _, detail = _rules(profile, fresh, _proof(**changes))["verified"]
    assert (count, ok, detail) == (1, False, why)


def test_a_site_without_a_drill_schedule_cannot_be_verified() -> None:
    sites = {name: _site(f"rest/{name}") for name in ("a", "b")}
    sites["c"] = SiteProfile(WEEK, None, "repo-c", kind="rest/c", offsite=True)
    rules = _rules(_profile(sites), [_fresh(n) for n in "abc"], _proof())
    assert rules["verified"][:2] == (1, False) and rules["verified"][3] == "c: no drill_schedule"


def _config(require: list[str], **top: Any) -> Config:
    def site(provider: str, dc: str, **extra: Any) -> dict[str, Any]:
        location = {"provider": provider, "region": "r", "datacenter": dc, "country": "FR"}
        return {"repository": f"rest:http://{dc}.invalid/", "password_command": "x"} | {
            "location": location,
            **extra,
        }

    data: dict[str, Any] = {
        "sites": {
            "a": site("ovh", "GRA", drill_schedule=None),
            "b": site("ovh", "SBG"),
            "c": site("ovh", "RBX"),
        },
        "sources": {"www": {"paths": ["/var/www"], "sites": ["a", "b", "c"]}},
        "placement": {"require": require},
        **top,
    }
    return Config.model_validate(data)


def test_a_config_that_cannot_meet_a_required_rule_is_a_placement_violation() -> None:
    found = {v.rule: v.message for v in label_violations(_config(list(_ALL)), "www")}
    assert set(found) == {
        "require_kinds",
        "require_offsite",
        "require_immutable",
        "require_verified",
    }
    assert found["require_kinds"] == (
        'source "www": the placement policy requires kinds (3-2-1-1-0), and 2 kinds of storage '
        "need a backend or a provider of their own; every site is rest/ovh"
    )
    assert "needs this host's location" in found["require_offsite"]
    assert "no site is declared append_only: true" in found["require_immutable"]
    assert 'site "a" has one of them null' in found["require_verified"]
    host = {"provider": "ovh", "region": "r", "datacenter": "GRA", "country": "FR"}
    located = {v.rule for v in label_violations(_config(["offsite"], location=host), "www")}
    assert located == set()
    profile = HostProfile.of(_config(["offsite", "immutable"], location=host), NOW)
    assert profile.sources["www"].require == ["offsite", "immutable"]
    assert profile.sites["a"].offsite is False and profile.sites["b"].offsite is True
    assert HostProfile.from_json(profile.to_json()) == profile


_ALL = ("copies", "kinds", "offsite", "immutable", "verified")


def test_a_profile_recorded_by_an_older_daemon_leaves_kinds_unknown() -> None:
    """A fleet exporter judging a host whose daemon recorded no kinds: unknown, never one kind
    per site (which would read as met)."""
    sites = {name: SiteProfile(WEEK, DAY, f"repo-{name}") for name in ("a", "b", "c")}
    rules = _rules(_profile(sites, located=False), [_fresh(n) for n in "abc"], _proof())
    assert rules["kinds"] == (None, False, False, "unknown")
    assert rules["copies"][:2] == (3, True)


def test_a_site_backed_up_lately_is_not_yet_due_a_drill() -> None:
    """As FirebreakRestoreDrillStale: a new site has a window after its first backup."""
    profile = _profile({name: _site(f"rest/{name}") for name in ("a", "b", "c")})
    changes = {
        "drills": {("www", "a"): _run(), ("www", "b"): _run()},
        "first_success": {("www", "c"): NOW - timedelta(days=2)},
    }
    rules = _rules(profile, [_fresh(n) for n in "abc"], _proof(**changes))
    assert rules["verified"][:2] == (0, True)


def test_immutable_counts_a_declared_site_whose_proof_is_recent() -> None:
    sites = {
        "a": _site("rest/a", append_only=True, immutability_interval_seconds=WEEK),
        "b": _site("rest/b"),  # a proof on record, but no longer declared
        "c": _site("rest/c", append_only=True, immutability_interval_seconds=WEEK),
    }
    proofs = {"a": _run(age_days=3), "b": _run(), "c": _run(age_days=9)}
    rules = _rules(_profile(sites), [_fresh(n) for n in "abc"], _proof(immutable=proofs))
    assert rules["immutable"][:2] == (1, True) and rules["immutable"][3] == "a"
