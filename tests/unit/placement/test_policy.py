"""Placement rules on labels, the policy's inheritance, and the what-if arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firebreak.config import ConfigError, parse_config
from firebreak.config.model import Config
from firebreak.placement.policy import effective_policy, label_violations
from firebreak.placement.targets import parse_repository
from firebreak.placement.whatif import Loss, simulate, what_if, worst_case_survivors

# name: (provider, region, datacenter, country, lat, lon)
PLACES: dict[str, tuple[str, str, str, str, float | None, float | None]] = {
    "sbg-1": ("ovh", "eu-west", "SBG", "FR", 48.58, 7.75),
    "sbg-2": ("ovh", "eu-west", "sbg", "FR", 48.58, 7.76),
    "gra": ("ovh", "eu-west", "GRA", "FR", 50.99, 2.13),
    "fsn": ("hetzner", "eu-central", "FSN1", "DE", 50.48, 12.37),
    "hel": ("hetzner", "eu-north", "HEL1", "FI", 60.17, 24.94),
    "lhr": ("aws", "eu-west-2", "LHR", "GB", None, None),
}


def _config(sites: list[str], policy: dict[str, Any] | None = None, **source: Any) -> Config:
    data: dict[str, Any] = {
        "sites": {
            name: {
                "repository": f"/srv/{name}",
                "password_command": "x",
                "location": {
                    "provider": p,
                    "region": r,
                    "datacenter": d,
                    "country": c,
                    "lat": lat,
                    "lon": lon,
                },
            }
            for name, (p, r, d, c, lat, lon) in PLACES.items()
        },
        "sources": {"www": {"paths": ["/var/www"], "sites": sites, **source}},
    }
    if policy is not None:
        data["placement"] = policy
    return Config.model_validate(data)


def _messages(config: Config) -> list[str]:
    return [violation.message for violation in label_violations(config, "www")]


CASES = [
    (["gra", "fsn", "hel"], None, {}, []),
    (
        ["sbg-1", "sbg-2", "fsn"],
        None,
        {},
        [
            'source "www": sites "sbg-1" and "sbg-2" are both in datacenter "SBG" — one fire there destroys both'
        ],
    ),
    (
        ["gra", "fsn"],
        None,
        {},
        ['source "www" has 2 sites; the placement policy needs at least 3 in distinct places'],
    ),
    (["gra", "fsn"], {"min_sites": 2}, {}, []),
    (
        ["gra", "sbg-1", "fsn"],
        {"distinct": ["provider"]},
        {},
        [
            'source "www": sites "gra" and "sbg-1" are both run by provider "ovh" — one provider\'s outage, bankruptcy or account lock-out takes both'
        ],
    ),
    (
        ["gra", "sbg-1", "fsn"],
        None,
        {"placement": {"distinct": ["country", "region"]}},
        [
            'source "www": sites "gra" and "sbg-1" are both in country "FR" — one country\'s disaster, grid failure or legal order reaches both',
            'source "www": sites "gra" and "sbg-1" are both in region "eu-west" — one regional disaster or outage takes both',
        ],
    ),
    (
        ["gra", "sbg-1", "fsn"],
        {"min_distance_km": 500},
        {},
        [
            'source "www": sites "gra" and "sbg-1" are 484 km apart; the placement policy needs at least 500 km — one flood, storm or grid failure can reach both',
            'source "www": sites "sbg-1" and "fsn" are 395 km apart; the placement policy needs at least 500 km — one flood, storm or grid failure can reach both',
        ],
    ),
    (
        ["gra", "fsn", "lhr"],
        None,
        {"placement": {"min_distance_km": 100}},
        ['source "www": site "lhr" has no lat/lon, which min_distance_km (100) needs'],
    ),
    (["gra", "fsn", "hel"], {"min_distance_km": 500}, {"placement": {"min_sites": 3}}, []),
]


@pytest.mark.parametrize(("sites", "global_policy", "source", "expected"), CASES)
def test_label_rules(
    sites: list[str],
    global_policy: dict[str, Any] | None,
    source: dict[str, Any],
    expected: list[str],
) -> None:
    config = _config(sites, global_policy, **source)
    assert sorted(_messages(config)) == sorted(expected)


def test_a_source_tightens_the_global_policy() -> None:
    config = _config(
        ["gra", "fsn", "hel"],
        {"min_sites": 3, "distinct": ["provider"], "min_distance_km": 100, "enforce": "warn"},
        placement={
            "min_sites": 4,
            "distinct": ["country"],
            "min_distance_km": 300,
            "enforce": "error",
        },
    )
    policy = effective_policy(config, "www")
    assert policy.min_sites == 4
    assert set(policy.distinct) == {"datacenter", "provider", "country"}
    assert policy.min_distance_km == 300
    assert policy.enforce == "error"
    violations = label_violations(config, "www")
    assert {v.rule for v in violations} == {"min_sites", "distinct_provider"}  # fsn, hel: hetzner
    assert {v.severity for v in violations} == {"error"}


def test_warn_mode_marks_violations_as_warnings() -> None:
    config = _config(["sbg-1", "sbg-2", "gra"], {"enforce": "warn"})
    [violation] = label_violations(config, "www")
    assert violation.severity == "warn"
    assert violation.sites == ("sbg-1", "sbg-2")
    assert violation.rule == "distinct_datacenter"


@pytest.mark.parametrize(
    ("source_placement", "path"),
    [
        ({"min_sites": 2}, "sources.www.placement.min_sites"),
        ({"min_distance_km": 10}, "sources.www.placement.min_distance_km"),
        ({"enforce": "warn"}, "sources.www.placement.enforce"),
        ({"min_offsite": 0}, "sources.www.placement.min_offsite"),
    ],
)
def test_a_source_may_not_loosen_the_global_policy(
    source_placement: dict[str, Any], path: str
) -> None:
    text = f"""
placement: {{min_sites: 3, min_distance_km: 100}}
sites:
  a: {{repository: /a, password_command: x, location: {{provider: p, region: r, datacenter: d, country: FR}}}}
sources:
  www: {{paths: [/w], sites: [a], placement: {source_placement}}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "f.yaml", base_dir=Path("/"))
    [problem] = caught.value.problems
    assert problem.path == path
    assert "a source may only tighten the global policy" in problem.message
    assert problem.line == 6


def test_what_if_counts_survivors_per_failure_domain() -> None:
    config = _config(["gra", "sbg-1", "fsn"], min_fresh_sites=2)
    rows = {f"{row.domain}={row.value}": row.outcome for row in what_if(config, "www")}
    assert rows["provider=ovh"].lost == ("gra", "sbg-1")
    assert rows["provider=ovh"].surviving == ("fsn",)
    assert not rows["provider=ovh"].safe
    assert rows["datacenter=GRA"].safe
    assert rows["country=DE"].surviving == ("gra", "sbg-1")
    assert worst_case_survivors(config, "www") == {
        "provider": 1,
        "region": 1,
        "country": 1,
        "datacenter": 2,
    }


def test_simulated_losses_combine_and_name_the_unsafe_sources() -> None:
    config = _config(["gra", "fsn", "hel"], min_fresh_sites=2)
    [after] = simulate(config, [Loss.parse("country=fr"), Loss.parse("site=hel")])
    assert after.lost == ("gra", "hel") and after.surviving == ("fsn",)
    assert not after.safe
    [fine] = simulate(config, [Loss.parse("datacenter=FSN1")])
    assert fine.safe


@pytest.mark.parametrize("text", ["ovh", "provider=", "planet=earth"])
def test_bad_loss_specs(text: str) -> None:
    with pytest.raises(ValueError, match=r"provider=ovh|is not one of"):
        Loss.parse(text)


@pytest.mark.parametrize(
    ("repository", "kind", "host", "identity"),
    [
        ("/srv/repo/", "local", None, "local:/srv/repo"),
        ("local:/srv/./repo", "local", None, "local:/srv/repo"),
        (
            "rest:http://u:pw@Backup.Example.net:8000/www/",
            "remote",
            "backup.example.net",
            "rest:http://backup.example.net:8000/www",
        ),
        (
            "rest:https://backup.example.net/www",
            "remote",
            "backup.example.net",
            "rest:https://backup.example.net:443/www",
        ),
        ("sftp:user@host.example:/srv/r", "remote", "host.example", "sftp://host.example:22/srv/r"),
        (
            "sftp://user@host.example:2222//srv/r",
            "remote",
            "host.example",
            "sftp://host.example:2222/srv/r",
        ),
        (
            "s3:s3.amazonaws.com/bucket/prefix",
            "remote",
            "s3.amazonaws.com",
            "s3:https://s3.amazonaws.com:443/bucket/prefix",
        ),
        ("s3:http://127.0.0.1:9000/b", "remote", "127.0.0.1", "s3:http://127.0.0.1:9000/b"),
        ("b2:bucket:path/", "service", None, "b2:bucket:path"),
        ("rclone:remote:backups", "service", None, "rclone:remote:backups"),
    ],
)
def test_repository_targets(repository: str, kind: str, host: str | None, identity: str) -> None:
    target = parse_repository(repository)
    assert (target.kind, target.host, target.identity) == (kind, host, identity)
    assert "pw" not in target.identity
