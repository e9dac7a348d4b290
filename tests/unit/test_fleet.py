"""Host profiles as heartbeats record them, and which hosts share a repository."""

from __future__ import annotations

import json

import pytest

from firebreak.clock import utcnow
from firebreak.config.model import Config
from firebreak.fleet import HostProfile, SiteProfile, fleet_peers

LOCATION = {"provider": "p", "region": "r", "country": "FR"}


def _config(**top: object) -> Config:
    return Config.model_validate(
        {
            **top,
            "sites": {
                name: {
                    "repository": f"sftp:backup@{name}.invalid:/srv/restic",
                    "password_command": "echo hunter2-4471",
                    "env": {"AWS_SECRET_ACCESS_KEY": "s3cr3t-4471"},
                    "location": {**LOCATION, "datacenter": name},
                }
                for name in ("a", "b", "c")
            },
            "sources": {"etc": {"paths": ["/etc"], "sites": ["a", "b", "c"], "max_age": "26h"}},
        }
    )


def test_a_profile_survives_its_record_and_holds_no_secret() -> None:
    config = _config()
    profile = HostProfile.of(config, utcnow())
    recorded = profile.to_json()
    assert HostProfile.from_json(recorded) == profile
    assert "4471" not in recorded and "password" not in recorded and "backup@" not in recorded
    etc = profile.sources["etc"]
    assert (etc.sites, etc.max_age_seconds, etc.required_fresh_sites) == (["a", "b", "c"], 93600, 2)
    assert profile.sites["a"].repository == "sftp://a.invalid:22/srv/restic"
    assert profile.sites["a"].check_interval_seconds == 7 * 86400


@pytest.mark.parametrize(
    "text", ["", "[]", '{"sources": {}}', '{"sources": {"x": {}}, "sites": {}}']
)
def test_a_profile_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a host profile"):
        HostProfile.from_json(text)


def test_a_newer_firebreaks_profile_reads_with_what_this_one_knows() -> None:
    recorded = json.loads(HostProfile.of(_config(), utcnow()).to_json())
    recorded["sources"]["etc"]["something_new"] = 1
    recorded["sites"]["a"].pop("repository")
    profile = HostProfile.from_json(json.dumps(recorded))
    assert profile.sites["a"].repository is None


def test_peers_are_the_other_hosts_sites_at_the_same_repository() -> None:
    def host(**sites: str) -> HostProfile:
        return HostProfile(
            {}, {name: SiteProfile(repository=where) for name, where in sites.items()}
        )

    found = fleet_peers(
        {
            "web1": host(a="rest:a", b="rest:b"),
            "web2": host(gra="rest:a", own="rest:web2"),
            "web3": host(a="rest:a", b="rest:b"),
        }
    )
    assert found["web1"] == {"a": [("web2", "gra"), ("web3", "a")], "b": [("web3", "b")]}
    assert found["web2"] == {"gra": [("web1", "a"), ("web3", "a")]}
    assert "own" not in found["web2"]


def test_a_local_path_is_each_hosts_own_and_a_server_is_shared_by_its_name() -> None:
    from firebreak.placement.targets import location, parse_repository

    def where(repository: str, host: str) -> str:
        return location(parse_repository(repository), host)

    assert where("/srv/restic", "web1") != where("/srv/restic", "web2")
    assert where("/srv/restic", "web1") == "web1:local:/srv/restic"
    shared = "rest:https://backup.invalid/fleet"
    assert where(shared, "web1") == where(shared, "web2") == parse_repository(shared).identity
    profiles = {host: HostProfile.of(_config(host=host), utcnow()) for host in ("web1", "web2")}
    assert fleet_peers(profiles)["web1"] == {name: [("web2", name)] for name in ("a", "b", "c")}
