"""The fleet collector (``firebreak exporter --fleet``): every host's metrics from a shared
history, each with a ``host`` label, judged against the profile each daemon recorded with its
heartbeat. A host whose daemon went silent keeps being judged: its sites go stale as time
passes, and ``firebreak_host_silent`` says why."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from sqlalchemy import Engine

from firebreak import __version__
from firebreak.clock import Deadline, utcnow
from firebreak.fleet import HostProfile, fleet_peers
from firebreak.history.database import schema_advice, schema_state
from firebreak.history.hosts import MISSED_BEATS, HostState, hosts
from firebreak.history.latest import SeriesState, peer_hosts, versions
from firebreak.metrics.collector import history_trouble, host_metrics

log = logging.getLogger(__name__)

HOST_GAUGES = {
    "firebreak_host_last_heartbeat_timestamp_seconds": "When the host's daemon was last seen",
    "firebreak_host_heartbeat_interval_seconds": "How often the host's daemon records a heartbeat",
    "firebreak_host_silent": (
        f"1 if the host's daemon missed {MISSED_BEATS} heartbeats or was stopped"
    ),
    "firebreak_host_stopped": "1 if the host's daemon was stopped on request and not restarted",
}


class FleetCollector(Collector):
    """Its own families (the build, the database, each host's heartbeat) are made at every
    scrape; each host's metrics are made again only when that host's runs moved (or a
    peer's, whose checks count for it), its recorded profile changed, or the soonest time
    one of its judgments turns by time alone passed (a site going stale, a proof growing
    old). Between those, a scrape serves the host's metrics as prometheus_client rendered
    them, with no read of its runs: ``render`` puts each family's lines of every host
    together under the family's one header."""

    def __init__(self, engine: Callable[[], Engine], restic_version: Callable[[], str]) -> None:
        self.engine = engine
        self.restic_version = restic_version
        # Hosts whose recorded profile could not be read: said once each.
        self._unreadable: set[str] = set()
        # Why the history could not be read at the last scrape: said when it changes.
        self._trouble: str | None = None
        # host → its metrics as last rendered, and until when they hold.
        self._blocks: dict[str, _Block] = {}
        # The hosts whose metrics the last collect() served, in order.
        self._served: list[str] = []
        # host → its recorded profile, as text and as read (None: unreadable).
        self._profiles: dict[str, tuple[str, HostProfile | None]] = {}
        # Every served host's families together, and which blocks they were made of.
        self._merged = b""
        self._merged_of: list[_Block] = []
        self._lock = threading.Lock()

    def render(self, registry: CollectorRegistry) -> bytes:
        """The exposition of a registry holding this collector: the registry's families,
        then every host's."""
        with self._lock:
            head = generate_latest(registry)
            blocks = [self._blocks[host] for host in self._served]
            if len(blocks) != len(self._merged_of) or any(
                block is not made for block, made in zip(blocks, self._merged_of, strict=True)
            ):
                self._merged = _merged([block.families for block in blocks])
                self._merged_of = blocks
            return head + self._merged

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "firebreak_build_info",
            "firebreak and restic versions",
            labels=["version", "restic_version"],
        )
        info.add_metric([__version__, self.restic_version()], 1)
        yield info
        database_up = GaugeMetricFamily("firebreak_database_up", "1 if the run history answered")
        self._served = []
        try:
            engine = self.engine()
            state = schema_state(engine)
            if not state.up_to_date:
                raise RuntimeError(schema_advice(state))
            now = utcnow()
            fleet = hosts(engine)
            profiles = {
                host.host: profile for host in fleet if (profile := self._profile(host)) is not None
            }
            self._refresh(engine, fleet, profiles, now)
        except Exception as exc:  # a scrape must answer even when the database does not
            log.error(
                "cannot read the run history for /metrics: %s", history_trouble(self.engine, exc)
            )
            database_up.add_metric([], 0)
            yield database_up
            return
        database_up.add_metric([], 1)
        yield database_up
        yield from _host_gauges(fleet, now)
        self._served = list(profiles)

    def _refresh(
        self,
        engine: Engine,
        fleet: list[HostState],
        profiles: dict[str, HostProfile],
        now: datetime,
    ) -> None:
        """Make again the metrics of every host whose block does not hold now."""
        shares = fleet_peers(profiles)
        # Read before the runs: a run that lands in between leaves a key that no longer
        # matches, and the host is made again at the next scrape.
        tokens = versions(engine)
        recorded = {host.host: host.profile for host in fleet}
        keys = {}
        for name in profiles:
            peers = shares.get(name) or {}
            keys[name] = (
                recorded[name],
                tuple((host, tokens.get(host)) for host in sorted(peer_hosts(name, peers))),
                tuple(sorted((site, tuple(sorted(others))) for site, others in peers.items())),
            )
        stale = [name for name in profiles if not self._holds(name, keys[name], now)]
        if stale:
            wanted = set().union(*(peer_hosts(name, shares.get(name)) for name in stale))
            history = SeriesState.read(engine, wanted, totals=True)
            for name in stale:
                deadline = Deadline()
                families = host_metrics(
                    profiles[name], history, name, now, shares.get(name), deadline
                )
                known = self._blocks[name].lines if name in self._blocks else {}
                rendered, lines = _rendered(families, name, known)
                self._blocks[name] = _Block(keys[name], now, deadline.at, rendered, lines)
        for gone in self._blocks.keys() - profiles.keys():
            del self._blocks[gone]
        for gone in self._profiles.keys() - recorded.keys():
            del self._profiles[gone]

    def _holds(self, host: str, key: tuple[object, ...], now: datetime) -> bool:
        block = self._blocks.get(host)
        # A clock set back to before the block was made: judged again, at that time.
        return (
            block is not None
            and block.key == key
            and block.made_at <= now
            and (block.until is None or now < block.until)
        )

    def _profile(self, host: HostState) -> HostProfile | None:
        known = self._profiles.get(host.host)
        if known is not None and known[0] == host.profile:
            return known[1]
        profile = self._read_profile(host)
        self._profiles[host.host] = (host.profile, profile)
        return profile

    def _read_profile(self, host: HostState) -> HostProfile | None:
        try:
            return HostProfile.from_json(host.profile)
        except ValueError as exc:
            if host.host not in self._unreadable:
                self._unreadable.add(host.host)
                log.error(
                    "%s: its recorded profile cannot be read (%s): only its heartbeat is served",
                    host.host,
                    exc,
                )
            return None


def _host_gauges(fleet: list[HostState], now: datetime) -> Iterator[Metric]:
    gauges = {
        name: GaugeMetricFamily(name, text, labels=["host"]) for name, text in HOST_GAUGES.items()
    }
    info = GaugeMetricFamily(
        "firebreak_host_info",
        "The firebreak version each host's daemon runs",
        labels=["host", "version"],
    )
    for host in fleet:
        key = [host.host]
        gauges["firebreak_host_last_heartbeat_timestamp_seconds"].add_metric(
            key, host.last_seen_at.timestamp()
        )
        gauges["firebreak_host_heartbeat_interval_seconds"].add_metric(key, host.interval_seconds)
        gauges["firebreak_host_silent"].add_metric(key, 1 if host.silent(now) else 0)
        gauges["firebreak_host_stopped"].add_metric(key, 1 if host.stopped_at else 0)
        info.add_metric([host.host, host.version], 1)
    yield from gauges.values()
    yield info


@dataclass(frozen=True)
class _Block:
    """One host's metrics as rendered: what they were made from, and until when they hold."""

    key: tuple[object, ...]
    made_at: datetime
    until: datetime | None
    # family name → (its HELP and TYPE lines, this host's sample lines)
    families: dict[str, tuple[str, str]]
    # Each sample's line, by what it says (most survive a run: see _rendered).
    lines: dict[tuple[object, ...], str]


class _Families:
    """Families to render, as a registry gives them."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _rendered(
    families: list[Metric], host: str, known: dict[tuple[object, ...], str]
) -> tuple[dict[str, tuple[str, str]], dict[tuple[object, ...], str]]:
    """The host's families, each sample labelled with the host, as prometheus_client renders
    them: each family's header, and its sample lines. A run changes a few of a host's
    hundreds of samples, so the line of a sample the host served before (known) is taken
    again, and only new ones are rendered; returns the lines for the next time."""
    rendered: dict[str, tuple[str, str]] = {}
    lines: dict[tuple[object, ...], str] = {}
    for family in families:
        header = _header(family)
        samples = [Sample(s.name, {"host": host, **s.labels}, *s[2:]) for s in family.samples]
        # Flat tuples of strings and numbers: the garbage collector stops tracking them.
        said = [
            (family.name, family.type, s.name, *itertools.chain(*s.labels.items()), *s[2:])
            for s in samples
        ]
        new = [sample for sample, key in zip(samples, said, strict=True) if key not in known]
        if new:
            # One line per sample, in order: the new ones are rendered together.
            alone = Metric(family.name, family.documentation, family.type, family.unit)
            alone.samples = new
            text = generate_latest(_Families([alone])).decode()[len(header) :]
            # Cut at newlines only: a label value may hold other line separators.
            made = iter(line + "\n" for line in text.split("\n")[:-1])
        for key in said:
            lines[key] = known[key] if key in known else next(made)
        rendered[family.name] = (header, "".join(lines[key] for key in said))
    return rendered, lines


@functools.cache
def _header_of(name: str, documentation: str, kind: str, unit: str) -> str:
    return generate_latest(_Families([Metric(name, documentation, kind, unit)])).decode()


def _header(family: Metric) -> str:
    """The family's HELP and TYPE lines."""
    return _header_of(family.name, family.documentation, family.type, family.unit)


def _merged(blocks: list[dict[str, tuple[str, str]]]) -> bytes:
    """Every host's lines of each family under the family's one header, hosts in order."""
    headers: dict[str, str] = {}
    lines: dict[str, list[str]] = {}
    for block in blocks:
        for name, (header, samples) in block.items():
            headers.setdefault(name, header)
            lines.setdefault(name, []).append(samples)
    return "".join(headers[name] + "".join(lines[name]) for name in headers).encode()
