"""Where well-known storage endpoints are, and sites whose labels say otherwise.

A site's location is what somebody typed; its repository URL often names the place for real
(``s3.gra.io.cloud.ovh.net`` is OVHcloud in Gravelines). A site labelled Hetzner FSN1 whose URL
is OVH Gravelines would pass every placement rule while sitting somewhere else: it is a
violation. The table covers the object-storage endpoints users meet most; the config's
``placement.endpoints`` extends or corrects it. Nothing here touches the network: only the URL
is read.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from firebreak.config.model import Config, Location
from firebreak.config.placement import Endpoint


@dataclass(frozen=True)
class Provider:
    """One provider's endpoints: a host pattern naming the region, and its regions' places."""

    name: str
    # Provider labels meaning this provider, normalised (_normal).
    aliases: frozenset[str]
    host: re.Pattern[str]
    # region -> (country, city)
    regions: dict[str, tuple[str, str]]


def _provider(name: str, aliases: str, host: str, regions: dict[str, tuple[str, str]]) -> Provider:
    return Provider(name, frozenset(aliases.split()), re.compile(host), regions)


# As the providers documented them in 2026. An endpoint of a known provider in a region missing
# here is still checked for its provider.
PROVIDERS: tuple[Provider, ...] = (
    _provider(
        "OVHcloud",
        "ovh ovhcloud",
        r"(?:^|\.)s3\.(?P<region>[a-z0-9-]+)\.(?:io\.|perf\.)?cloud\.ovh\.net$",
        {
            "gra": ("FR", "Gravelines"),
            "sbg": ("FR", "Strasbourg"),
            "rbx": ("FR", "Roubaix"),
            "de": ("DE", "Frankfurt"),
            "uk": ("GB", "London"),
            "waw": ("PL", "Warsaw"),
            "bhs": ("CA", "Beauharnois"),
        },
    ),
    _provider(
        "Hetzner",
        "hetzner hetzneronline",
        r"(?:^|\.)(?P<region>[a-z0-9-]+)\.your-objectstorage\.com$",
        {
            "fsn1": ("DE", "Falkenstein"),
            "nbg1": ("DE", "Nuremberg"),
            "hel1": ("FI", "Helsinki"),
        },
    ),
    _provider(
        "Backblaze",
        "backblaze b2 backblazeb2",
        # s3.us-west-004.backblazeb2.com: the cluster number is not the place.
        r"(?:^|\.)s3\.(?P<region>[a-z]+-[a-z]+)-\d+\.backblazeb2\.com$",
        {
            "us-west": ("US", "California or Arizona"),
            "us-east": ("US", "Reston"),
            "eu-central": ("NL", "Amsterdam"),
        },
    ),
    _provider(
        "AWS",
        "aws amazon amazonaws amazonwebservices awss3",
        r"(?:^|\.)s3(?:[.-]dualstack)?[.-](?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d+)\.amazonaws\.com$"
        r"|(?:^|\.)s3\.amazonaws\.com$",
        {
            "us-east-1": ("US", "N. Virginia"),
            "us-east-2": ("US", "Ohio"),
            "us-west-1": ("US", "N. California"),
            "us-west-2": ("US", "Oregon"),
            "ca-central-1": ("CA", "Montreal"),
            "eu-west-1": ("IE", "Dublin"),
            "eu-west-2": ("GB", "London"),
            "eu-west-3": ("FR", "Paris"),
            "eu-central-1": ("DE", "Frankfurt"),
            "eu-central-2": ("CH", "Zurich"),
            "eu-north-1": ("SE", "Stockholm"),
            "eu-south-1": ("IT", "Milan"),
            "eu-south-2": ("ES", "Aragon"),
            "ap-south-1": ("IN", "Mumbai"),
            "ap-northeast-1": ("JP", "Tokyo"),
            "ap-northeast-2": ("KR", "Seoul"),
            "ap-northeast-3": ("JP", "Osaka"),
            "ap-southeast-1": ("SG", "Singapore"),
            "ap-southeast-2": ("AU", "Sydney"),
            "sa-east-1": ("BR", "São Paulo"),
            "af-south-1": ("ZA", "Cape Town"),
            "me-south-1": ("BH", "Bahrain"),
        },
    ),
    _provider(
        "Scaleway",
        "scaleway scw",
        r"(?:^|\.)s3\.(?P<region>[a-z]{2}-[a-z]{3})\.scw\.cloud$",
        {
            "fr-par": ("FR", "Paris"),
            "nl-ams": ("NL", "Amsterdam"),
            "pl-waw": ("PL", "Warsaw"),
        },
    ),
    _provider(
        "Wasabi",
        "wasabi wasabisys",
        r"(?:^|\.)s3\.(?P<region>[a-z]{2}-[a-z]+-\d+)\.wasabisys\.com$|(?:^|\.)s3\.wasabisys\.com$",
        {
            "us-east-1": ("US", "Ashburn"),
            "us-east-2": ("US", "Manassas"),
            "us-central-1": ("US", "Plano"),
            "us-west-1": ("US", "Hillsboro"),
            "ca-central-1": ("CA", "Toronto"),
            "eu-central-1": ("NL", "Amsterdam"),
            "eu-central-2": ("DE", "Frankfurt"),
            "eu-west-1": ("GB", "London"),
            "eu-west-2": ("FR", "Paris"),
            "ap-northeast-1": ("JP", "Tokyo"),
            "ap-northeast-2": ("JP", "Osaka"),
            "ap-southeast-1": ("SG", "Singapore"),
            "ap-southeast-2": ("AU", "Sydney"),
        },
    ),
)


@dataclass(frozen=True)
class EndpointPlace:
    """Where an endpoint is, as far as the table knows."""

    provider: str
    aliases: frozenset[str]
    region: str | None = None
    country: str | None = None
    city: str | None = None
    # The provider's other regions the table knows (a label naming one contradicts).
    other_regions: frozenset[str] = frozenset()
    # From the config's placement.endpoints, not firebreak's table.
    configured: bool = False

    def __str__(self) -> str:
        said = self.provider + (f" region {self.region}" if self.region else "")
        where = ", ".join(part for part in (self.city, self.country) if part)
        return f"{said} ({where})" if where else said


def _normal(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.casefold())


def locate(host: str, extra: Iterable[Endpoint] = ()) -> EndpointPlace | None:
    """Where the endpoint ``host`` is: the config's entries first, then the table. None: not
    a known endpoint."""
    host = host.strip().rstrip(".").casefold()
    entries = list(extra)
    for entry in entries:
        pattern = entry.host.strip().rstrip(".").casefold()
        # *.s3.example.net is the bucket-style names and the endpoint itself.
        if fnmatch.fnmatchcase(host, pattern) or (pattern.startswith("*.") and host == pattern[2:]):
            siblings = {
                other.region.casefold()
                for other in entries
                if other.region and _normal(other.provider) == _normal(entry.provider)
            }
            region = entry.region.casefold() if entry.region else None
            return EndpointPlace(
                entry.provider,
                frozenset({_normal(entry.provider)}),
                region,
                entry.country.upper() if entry.country else None,
                other_regions=frozenset(siblings - {region}),
                configured=True,
            )
    for provider in PROVIDERS:
        match = provider.host.search(host)
        if match is None:
            continue
        region = match.group("region")
        known = region in provider.regions
        country, city = provider.regions[region] if known else (None, None)
        return EndpointPlace(
            provider.name,
            provider.aliases,
            region,
            country,
            city,
            # A region the table lacks (s3.rbx-archive…) may be named like a known one: only
            # a known region's labels are compared with the others'.
            other_regions=frozenset(provider.regions) - {region} if known else frozenset(),
        )
    return None


# Codes people write for a country that ISO 3166-1 spells otherwise.
_COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}


def _country(code: str) -> str:
    code = code.strip().upper()
    return _COUNTRY_ALIASES.get(code, code)


def _names_region(label: str, region: str) -> bool:
    """Whether a location label names this region code: ``FSN1-DC14`` names ``fsn1``,
    ``SBG2`` names ``sbg``; ``dev`` does not name ``de``."""
    label = label.strip().casefold()
    if not label.startswith(region):
        return False
    return len(label) == len(region) or not label[len(region)].isalpha()


def contradictions(location: Location, place: EndpointPlace) -> list[str]:
    """How a site's declared location contradicts where its endpoint is (empty: it does not)."""
    found = []
    provider = _normal(location.provider)
    if not any(
        provider == alias or (len(alias) >= 3 and provider.startswith(alias))
        for alias in place.aliases
    ):
        found.append(f'provider "{location.provider}"')
    if place.country is not None and _country(location.country) != place.country:
        found.append(f'country "{location.country.upper()}"')
    labels = {"region": location.region, "datacenter": location.datacenter}
    if place.region is not None and not any(
        _names_region(label, place.region) for label in labels.values()
    ):
        for field, label in labels.items():
            named = sorted(other for other in place.other_regions if _names_region(label, other))
            if named:
                found.append(f'{field} "{label}" ({place.provider} region {named[-1]})')
    return found


def endpoint_problems(config: Config, site_name: str, host: str | None) -> str | None:
    """The site's declared location against its endpoint, in an operator's words; None when
    the endpoint is unknown or agrees."""
    if not host or "{" in host:  # a ${VAR} stands for itself: nothing to compare
        return None
    place = locate(host, config.placement.endpoints)
    if place is None:
        return None
    wrong = contradictions(config.sites[site_name].location, place)
    if not wrong:
        return None
    source = "placement.endpoints" if place.configured else "firebreak's endpoint table"
    return (
        f'site "{site_name}" is labelled {" and ".join(wrong)}, but its endpoint {host} is '
        f"{place} per {source} — placement would judge a place the copy is not in; "
        "correct the site's location (or placement.endpoints if the table is wrong)"
    )
