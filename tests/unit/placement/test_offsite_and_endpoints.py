"""The host's own place (offsite copies, losing its datacenter) and sites whose declared
location contradicts what their endpoint's URL says. Only URLs are read: nothing is looked
up or contacted."""

from __future__ import annotations

from typing import Any

import pytest

from firebreak.config.model import Config
from firebreak.placement.endpoints import locate
from firebreak.placement.policy import label_violations
from firebreak.placement.whatif import Loss, degradation, what_if

# Falkenstein, Gravelines, Helsinki; and a site with no coordinates.
FSN = {"provider": "hetzner", "region": "fsn1", "datacenter": "FSN1-DC14", "country": "DE"}
SITES: dict[str, dict[str, Any]] = {
    "fsn": {**FSN, "lat": 50.48, "lon": 12.37},
    "gra": {"provider": "ovh", "region": "gra", "datacenter": "GRA11", "country": "FR"}
    | {"lat": 50.99, "lon": 2.13},
    "hel": {"provider": "hetzner", "region": "hel1", "datacenter": "HEL1-DC2", "country": "FI"}
    | {"lat": 60.17, "lon": 24.94},
    "nbg": {"provider": "hetzner", "region": "nbg1", "datacenter": "NBG1-DC3", "country": "DE"},
}


def _config(
    sites: dict[str, dict[str, Any]],
    *,
    host: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    repositories: dict[str, str] | None = None,
) -> Config:
    data: dict[str, Any] = {
        "sites": {
            name: {
                "repository": (repositories or {}).get(name, f"/srv/{name}"),
                "password_command": "x",
                "location": location,
            }
            for name, location in sites.items()
        },
        "sources": {"www": {"paths": ["/var/www"], "sites": list(sites)}},
        "placement": policy or {},
    }
    if host is not None:
        data["location"] = host
    return Config.model_validate(data)


def _violations(config: Config) -> list[tuple[str, tuple[str, ...], str]]:
    return [(v.rule, v.sites, v.message) for v in label_violations(config, "www")]


def test_a_site_in_the_hosts_own_datacenter_is_not_offsite() -> None:
    """Three sites, one of them in the host's building: two offsite, which is enough for
    the default (1) and not for 3; the message names the one that is not."""
    three = {name: SITES[name] for name in ("fsn", "gra", "hel")}
    host = {**FSN, "datacenter": "fsn1-dc14", "lat": 50.48, "lon": 12.38}
    assert _violations(_config(three, host=host)) == []
    [(rule, sites, message)] = _violations(_config(three, host=host, policy={"min_offsite": 3}))
    assert (rule, sites) == ("min_offsite", ("fsn",))
    assert message == (
        'source "www" has 2 sites offsite (outside this host\'s datacenter "fsn1-dc14"); the '
        'placement policy needs at least 3: site "fsn" is in it — one fire there destroys '
        "this machine and every copy with it"
    )
    # Without the host's location nothing is counted: it cannot be.
    assert _violations(_config(three, policy={"min_offsite": 3})) == []


def test_offsite_km_needs_distance_and_positions() -> None:
    """Gravelines is about 750 km from Falkenstein, Helsinki about 1 300 km; Nuremberg has
    no coordinates and cannot count."""
    four = {name: SITES[name] for name in ("fsn", "gra", "hel", "nbg")}
    host = {**FSN, "datacenter": "FSN1-DC1", "lat": 50.48, "lon": 12.37}
    policy = {"min_offsite": 2, "offsite_km": 1000, "min_sites": 1}
    [(rule, sites, message)] = _violations(_config(four, host=host, policy=policy))
    assert (rule, sites) == ("min_offsite", ("fsn", "gra", "nbg"))
    assert "has 1 site offsite" in message and "at least 1000 km from it" in message
    assert 'sites "fsn", "gra" are in it or nearer' in message
    assert 'site "nbg" cannot count: offsite_km needs lat/lon on the site' in message
    policy["offsite_km"] = 700
    [(_, sites, _)] = _violations(_config(four, host=host, policy=policy | {"min_offsite": 3}))
    assert sites == ("fsn", "nbg")


def test_the_what_if_table_loses_the_hosts_datacenter_too() -> None:
    three = {name: SITES[name] for name in ("gra", "hel", "nbg")}
    config = _config(three, host={**FSN, "datacenter": "FSN1-DC14"})
    rows = {f"{row.domain}={row.value}": row for row in what_if(config, "www")}
    own = rows["datacenter=FSN1-DC14"]
    assert own.host and own.outcome.lost == () and own.outcome.safe
    assert not rows["datacenter=GRA11"].host
    assert rows["provider=hetzner"].host  # the host's provider is among the sites'
    # --lose accepts the host's own datacenter, which holds no copy.
    assert Loss.parse("datacenter=fsn1-dc14").unknown(config) is None
    assert Loss.parse("datacenter=FSN9").unknown(_config(three)) is not None
    # A host sharing a building with a site: losing it is losing that site.
    beside = _config({**three, "fsn": SITES["fsn"]}, host=FSN, policy={"min_sites": 3})
    rows = {f"{row.domain}={row.value}": row for row in what_if(beside, "www")}
    assert rows["datacenter=FSN1-DC14"].host
    assert rows["datacenter=FSN1-DC14"].outcome.lost == ("fsn",)
    assert degradation(beside, "www") is None


@pytest.mark.parametrize(
    ("host", "provider", "region", "country"),
    [
        ("s3.gra.io.cloud.ovh.net", "OVHcloud", "gra", "FR"),
        ("s3.sbg.perf.cloud.ovh.net", "OVHcloud", "sbg", "FR"),
        ("S3.DE.IO.CLOUD.OVH.NET.", "OVHcloud", "de", "DE"),
        ("fsn1.your-objectstorage.com", "Hetzner", "fsn1", "DE"),
        ("backups.hel1.your-objectstorage.com", "Hetzner", "hel1", "FI"),
        ("s3.eu-central-003.backblazeb2.com", "Backblaze", "eu-central", "NL"),
        ("s3.us-west-004.backblazeb2.com", "Backblaze", "us-west", "US"),
        ("s3.eu-west-3.amazonaws.com", "AWS", "eu-west-3", "FR"),
        ("bucket.s3.eu-central-1.amazonaws.com", "AWS", "eu-central-1", "DE"),
        ("s3.dualstack.ap-southeast-2.amazonaws.com", "AWS", "ap-southeast-2", "AU"),
        ("s3-eu-west-1.amazonaws.com", "AWS", "eu-west-1", "IE"),
        ("s3.amazonaws.com", "AWS", None, None),  # the bucket's region decides
        ("s3.xx-east-9.amazonaws.com", "AWS", "xx-east-9", None),  # a region the table lacks
        ("s3.nl-ams.scw.cloud", "Scaleway", "nl-ams", "NL"),
        ("s3.eu-west-2.wasabisys.com", "Wasabi", "eu-west-2", "FR"),
    ],
)
def test_well_known_endpoints_are_placed(
    host: str, provider: str, region: str | None, country: str | None
) -> None:
    place = locate(host)
    assert place is not None
    assert (place.provider, place.region, place.country) == (provider, region, country)


@pytest.mark.parametrize(
    "host", ["minio.example.invalid", "127.0.0.1", "s3.gra.io.cloud.ovh.net.example.invalid"]
)
def test_other_endpoints_are_not_placed(host: str) -> None:
    assert locate(host) is None


GRA_URL = "s3:https://s3.gra.io.cloud.ovh.net/backups"


def test_a_site_labelled_falkenstein_whose_url_is_gravelines_is_a_violation() -> None:
    sites = {"fsn": SITES["fsn"], "hel": SITES["hel"], "gra": SITES["gra"]}
    config = _config(sites, repositories={"fsn": GRA_URL})
    [(rule, names, message)] = _violations(config)
    assert (rule, names) == ("endpoint_location", ("fsn",))
    assert message == (
        'source "www": site "fsn" is labelled provider "hetzner" and country "DE", but its '
        "endpoint s3.gra.io.cloud.ovh.net is OVHcloud region gra (Gravelines, FR) per "
        "firebreak's endpoint table — placement would judge a place the copy is not in; "
        "correct the site's location (or placement.endpoints if the table is wrong)"
    )
    # A warning even under enforce: error: a table that lags a provider must never stop
    # the backups.
    assert [v.severity for v in label_violations(config, "www")] == ["warn"]


@pytest.mark.parametrize(
    ("location", "wrong", "url"),
    [
        # Free-form labels that agree, or name no other region: no contradiction.
        ({"provider": "OVHcloud", "region": "gra", "datacenter": "GRA11"}, [], GRA_URL),
        ({"provider": "OVH Cloud", "region": "eu-west", "datacenter": "Gravelines"}, [], GRA_URL),
        ({"provider": "ovh-public-cloud", "region": "gra", "datacenter": "GRA-3"}, [], GRA_URL),
        # The same provider, another of its regions: the label contradicts the URL.
        (
            {"provider": "ovh", "region": "eu-west", "datacenter": "SBG5"},
            ['datacenter "SBG5" (OVHcloud region sbg)'],
            GRA_URL,
        ),
        (
            {"provider": "ovh", "region": "rbx", "datacenter": "RBX-8"},
            ['region "rbx" (OVHcloud region rbx)', 'datacenter "RBX-8" (OVHcloud region rbx)'],
            GRA_URL,
        ),
        (
            {"provider": "scaleway", "region": "gra", "datacenter": "GRA11"},
            ['provider "scaleway"'],
            GRA_URL,
        ),
        # A region the table does not know: its labels are not compared with known ones.
        (
            {"provider": "ovh", "region": "RBX", "datacenter": "RBX-8"},
            [],
            "s3:https://s3.rbx-archive.io.cloud.ovh.net/cold",
        ),
        # UK is how many write Great Britain.
        (
            {"provider": "ovh", "region": "uk", "datacenter": "LON1", "country": "UK"},
            [],
            "s3:https://s3.uk.io.cloud.ovh.net/b",
        ),
        (
            {"provider": "ovh", "region": "uk", "datacenter": "LON1", "country": "DE"},
            ['country "DE"'],
            "s3:https://s3.uk.io.cloud.ovh.net/b",
        ),
    ],
)
def test_labels_against_the_endpoint(location: dict[str, str], wrong: list[str], url: str) -> None:
    sites = {"gra": {"country": "FR", **location}, "fsn": SITES["fsn"], "hel": SITES["hel"]}
    violations = _violations(_config(sites, repositories={"gra": url}))
    if not wrong:
        assert violations == []
    else:
        [(_, _, message)] = violations
        assert f"labelled {' and '.join(wrong)}, but" in message


def test_the_configs_endpoints_come_first_and_a_variable_is_not_guessed() -> None:
    sites = {"par": dict(SITES["gra"]), "fsn": SITES["fsn"], "hel": SITES["hel"]}
    policy = {
        "endpoints": [
            {"host": "*.s3.par.example.invalid", "provider": "example", "region": "par"},
            {"host": "s3.gra.io.cloud.ovh.net", "provider": "ovh", "country": "BE"},
        ]
    }
    url = "s3:https://bucket.s3.par.example.invalid/repo"
    [(rule, _, message)] = _violations(_config(sites, policy=policy, repositories={"par": url}))
    assert rule == "endpoint_location"
    assert 'labelled provider "ovh", but its endpoint bucket.s3.par.example.invalid is ' in message
    assert "example region par per placement.endpoints" in message
    # *.HOST matches the endpoint itself too, as restic URLs usually name it.
    url = "s3:https://s3.par.example.invalid/bucket"
    [(_, _, message)] = _violations(_config(sites, policy=policy, repositories={"par": url}))
    assert "its endpoint s3.par.example.invalid is example region par" in message
    # An entry of the config's wins over the table (here, wrongly: it says so).
    [(_, _, message)] = _violations(_config(sites, policy=policy, repositories={"par": GRA_URL}))
    assert 'labelled country "FR"' in message and "ovh (BE) per placement.endpoints" in message
    # ${VAR} in the URL: its value is a secret's business, not placement's.
    hidden = "s3:https://${S3_HOST}/repo"
    assert _violations(_config(sites, policy=policy, repositories={"par": hidden})) == []
