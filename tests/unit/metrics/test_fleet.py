"""The fleet exporter's cache: a host's metrics are served from what was rendered until its
runs (or a peer's) move, its profile changes, or a judgment turns by time alone; whatever
the moment, a scrape serves exactly what a fresh exporter would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from sqlalchemy import Engine

from firebreak.clock import utcnow
from firebreak.config.model import Config
from firebreak.fleet import HostProfile, fleet_peers
from firebreak.history import latest
from firebreak.history.hosts import beat, forget, hosts
from firebreak.history.records import RunOutcome, finish_run, start_run
from firebreak.metrics import fleet
from firebreak.metrics.collector import host_metrics
from firebreak.metrics.fleet import FleetCollector
from firebreak.outcomes import Operation, Status

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _config(host: str, max_age: str = "26h") -> Config:
    return Config.model_validate(
        {
            "host": host,
            "sites": {
                name: {
                    # The same servers for both hosts: their repositories are shared (peers).
                    "repository": f"rest:http://{name}.invalid:8000/repo",
                    "password_command": "cat /nowhere",
                    "location": {
                        "provider": name,
                        "region": "r",
                        "datacenter": name,
                        "country": "FR",
                    },
                    "append_only": name == "c",
                }
                for name in ("a", "b", "c")
            },
            "sources": {
                "etc": {"paths": ["/etc"], "sites": ["a", "b", "c"], "max_age": max_age},
                "www": {"paths": ["/srv"], "sites": ["a", "b"], "max_age": "2h"},
            },
        }
    )


def _run(
    engine: Engine,
    host: str,
    site: str,
    at: datetime,
    source: str | None = "etc",
    operation: Operation = Operation.BACKUP,
    status: str = Status.SUCCESS,
) -> None:
    run_id = start_run(
        engine,
        source=source,
        site=site,
        operation=operation,
        host=host,
        restic_version="0.14.0",
        started_at=at,
    )
    error = "NotImmutable" if status == Status.FAILED else None
    finish_run(engine, run_id, RunOutcome(status, error_class=error), at + timedelta(seconds=30))


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fleet_of_two(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, _Clock]:
    now = utcnow().replace(microsecond=0)
    for host in ("web1", "web2"):
        beat(
            engine,
            host,
            started_at=now - DAY,
            interval=timedelta(minutes=1),
            version="test",
            pid=None,
            profile=HostProfile.of(_config(host), now).to_json(),
        )
    # Backups of different ages: each makes a site stale at its own time.
    _run(engine, "web1", "a", now - 20 * HOUR)
    _run(engine, "web1", "b", now - 25 * HOUR)
    _run(engine, "web1", "c", now - 3 * HOUR)
    _run(engine, "web1", "a", now - 90 * 60 * timedelta(seconds=1), source="www")
    _run(engine, "web2", "a", now - 10 * HOUR)
    # A refused delete at c proves it immutable for a while; web2's check at the shared a
    # counts for web1.
    _run(engine, "web1", "c", now - 7 * DAY, source=None, operation=Operation.IMMUTABILITY)
    _run(engine, "web2", "a", now - 2 * DAY, source=None, operation=Operation.CHECK)
    clock = _Clock(now)
    monkeypatch.setattr(fleet, "utcnow", clock)
    return engine, clock


def _scrape(collector: FleetCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return collector.render(registry).decode()


def _fresh(engine: Engine) -> str:
    return _scrape(FleetCollector(lambda: engine, lambda: "0.14.0"))


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The hosts of each read of runs a scrape makes."""
    seen: list[set[str]] = []
    read = latest.SeriesState.read

    def counted(engine: Engine, hosts: Any, *args: Any, **kwargs: Any) -> latest.SeriesState:
        seen.append(set(hosts))
        return read(engine, hosts, *args, **kwargs)

    monkeypatch.setattr(fleet.SeriesState, "read", counted)
    return seen


def test_a_cached_scrape_serves_what_a_fresh_exporter_would_at_every_moment(
    fleet_of_two: tuple[Engine, _Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, clock = fleet_of_two
    start = clock.now
    cached = FleetCollector(lambda: engine, lambda: "0.14.0")
    first = _scrape(cached)
    reads = _reads(monkeypatch)  # the fresh exporters' reads are taken off as they come
    # www at a goes stale 30 min from now, etc at b in 1 h, etc at a in 6 h; the proof at c
    # stops counting after its window (8 days from its start).
    turns = [start + 30 * 60 * timedelta(seconds=1), start + HOUR, start + 6 * HOUR]
    moments = [start + timedelta(seconds=1), start + 29 * 60 * timedelta(seconds=1)]
    for turn in turns:
        moments += [turn - timedelta(seconds=1), turn, turn + timedelta(seconds=1)]
    # etc at c goes stale at 23 h; nothing else turns until the proof's window ends at 24 h.
    second = timedelta(seconds=1)
    proof_ends = start + DAY
    moments += [start + 23 * HOUR + second, proof_ends - second, proof_ends + second]
    moments += [start + 8 * DAY, start + 40 * DAY]
    # A clock set back: judged again at the earlier time.
    moments += [start + 2 * HOUR]
    served, read_by = {}, {}
    for moment in moments:
        clock.now = moment
        served[moment] = _scrape(cached)
        read_by[moment] = len(reads)
        assert served[moment] == _fresh(engine), moment
        reads_of_fresh = len(reads) - read_by[moment]
        del reads[read_by[moment] :]
        assert reads_of_fresh == 1
    # Nothing was read before the first turn; each turn made the hosts again once.
    assert read_by[turns[0] - timedelta(seconds=1)] == 0
    assert 'firebreak_site_fresh{host="web1",site="a",source="www"} 1.0' in first
    assert 'firebreak_site_fresh{host="web1",site="a",source="www"} 0.0' in served[turns[0]]
    assert 'firebreak_site_fresh{host="web1",site="b",source="etc"} 0.0' in served[turns[1]]
    assert read_by[turns[0]] == 1 and read_by[turns[2] - timedelta(seconds=1)] == 2
    immutable = 'firebreak_site_immutable{host="web1",site="c"} '
    assert immutable + "1.0" in served[proof_ends - second]
    assert immutable + "0.0" in served[proof_ends + second]
    assert read_by[moments[-2]] <= len(turns) + 5
    assert read_by[moments[-1]] == read_by[moments[-2]] + 1


def test_a_new_run_of_a_host_or_of_its_peer_is_served_at_the_next_scrape(
    fleet_of_two: tuple[Engine, _Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, clock = fleet_of_two
    cached = FleetCollector(lambda: engine, lambda: "0.14.0")
    _scrape(cached)
    reads = _reads(monkeypatch)
    again = _scrape(cached)
    assert reads == [], "a scrape with nothing new read runs"
    assert again == _fresh(engine)
    del reads[:]
    # web2 checks b: b's check is shared, so web1's metrics change too.
    _run(engine, "web2", "b", clock.now - 60 * timedelta(seconds=1), None, Operation.CHECK)
    again = _scrape(cached)
    assert reads == [{"web1", "web2"}]
    assert again == _fresh(engine)
    assert 'firebreak_last_check_outcome{host="web1",outcome="success",site="b"} 1.0' in again
    # A backup that failed, a run still going: both are served at once.
    _run(engine, "web1", "b", clock.now, status=Status.FAILED)
    start_run(
        engine,
        source="www",
        site="b",
        operation=Operation.BACKUP,
        host="web1",
        restic_version="0.14.0",
        started_at=clock.now,
    )
    assert _scrape(cached) == _fresh(engine)
    families = list(text_string_to_metric_families(_scrape(cached)))
    names = [family.name for family in families]
    assert len(names) == len(set(names)), "a family served twice"


def test_a_changed_profile_or_a_forgotten_host_is_served_at_the_next_scrape(
    fleet_of_two: tuple[Engine, _Clock],
) -> None:
    engine, clock = fleet_of_two
    cached = FleetCollector(lambda: engine, lambda: "0.14.0")
    assert 'host="web2"' in _scrape(cached)
    # web1's daemon now keeps etc for 30 h: its b is fresh again.
    looser = _config("web1", max_age="30h")
    beat(
        engine,
        "web1",
        started_at=clock.now,
        interval=timedelta(minutes=1),
        version="test",
        pid=None,
        profile=HostProfile.of(looser, clock.now).to_json(),
    )
    clock.now += 2 * HOUR
    served = _scrape(cached)
    assert served == _fresh(engine)
    assert 'firebreak_site_fresh{host="web1",site="b",source="etc"} 1.0' in served
    assert forget(engine, "web2")
    served = _scrape(cached)
    assert served == _fresh(engine) and 'host="web2"' not in served


def test_what_is_served_is_what_prometheus_client_renders_of_every_hosts_families(
    fleet_of_two: tuple[Engine, _Clock],
) -> None:
    """Lines kept from an earlier scrape, put together family by family, are what rendering
    every host's families merged by name gives."""
    engine, clock = fleet_of_two
    cached = FleetCollector(lambda: engine, lambda: "0.14.0")
    _scrape(cached)
    _run(engine, "web1", "a", clock.now, status=Status.FAILED)
    clock.now += 3 * HOUR
    served = _scrape(cached)
    expected = _as_prometheus_client_renders(engine, clock.now)
    assert len(expected) > 10_000 and served.endswith(expected)


def test_a_host_name_holding_a_line_separator_other_than_newline_is_served_whole(
    fleet_of_two: tuple[Engine, _Clock],
) -> None:
    engine, clock = fleet_of_two
    odd = "web\x1c3"
    beat(
        engine,
        odd,
        started_at=clock.now,
        interval=timedelta(minutes=1),
        version="test",
        pid=None,
        profile=HostProfile.of(_config(odd), clock.now).to_json(),
    )
    _run(engine, odd, "a", clock.now - HOUR)
    served = _scrape(FleetCollector(lambda: engine, lambda: "0.14.0"))
    assert "firebreak_database_up 1.0" in served
    assert served.endswith(_as_prometheus_client_renders(engine, clock.now))


def _as_prometheus_client_renders(engine: Engine, now: datetime) -> str:
    """Every host's families merged by name, rendered by prometheus_client at once."""
    profiles = {host.host: HostProfile.from_json(host.profile) for host in hosts(engine)}
    shares = fleet_peers(profiles)
    state = latest.SeriesState.read(engine, profiles, totals=True)
    merged: dict[str, Metric] = {}
    for host, profile in profiles.items():
        for family in host_metrics(profile, state, host, now, shares.get(host)):
            into = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            into.samples += [
                Sample(sample.name, {"host": host, **sample.labels}, *sample[2:])
                for sample in family.samples
            ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(list(merged.values())))
    return generate_latest(registry).decode()


class _Merged(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
