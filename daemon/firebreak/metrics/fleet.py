"""The fleet collector (``firebreak exporter --fleet``): every host's metrics from a shared
history, each with a ``host`` label, judged against the profile each daemon recorded with its
heartbeat. A host whose daemon went silent keeps being judged: its sites go stale as time
passes, and ``firebreak_host_silent`` says why."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from sqlalchemy import Engine

from firebreak import __version__
from firebreak.clock import utcnow
from firebreak.fleet import HostProfile, fleet_peers
from firebreak.history.database import schema_advice, schema_state
from firebreak.history.hosts import MISSED_BEATS, HostState, hosts
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
    def __init__(self, engine: Callable[[], Engine], restic_version: Callable[[], str]) -> None:
        self.engine = engine
        self.restic_version = restic_version
        # Hosts whose recorded profile could not be read: said once each.
        self._unreadable: set[str] = set()
        # Why the history could not be read at the last scrape: said when it changes.
        self._trouble: str | None = None

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "firebreak_build_info",
            "firebreak and restic versions",
            labels=["version", "restic_version"],
        )
        info.add_metric([__version__, self.restic_version()], 1)
        yield info
        database_up = GaugeMetricFamily("firebreak_database_up", "1 if the run history answered")
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
            shares = fleet_peers(profiles)
            families: dict[str, Metric] = {}
            for name, profile in profiles.items():
                for family in host_metrics(profile, engine, name, now, shares.get(name)):
                    _relabel(families, family, name)
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
        yield from families.values()

    def _profile(self, host: HostState) -> HostProfile | None:
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


def _relabel(families: dict[str, Metric], family: Metric, host: str) -> None:
    """Add the family's samples to the fleet's family of that name, each labelled with the
    host."""
    merged = families.get(family.name)
    if merged is None:
        merged = families[family.name] = Metric(
            family.name, family.documentation, family.type, family.unit
        )
    for sample in family.samples:
        labels = {"host": host, **sample.labels}
        merged.samples.append(
            Sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
        )
