"""Reading the latest state of hosts' series (history/series.py keeps it as runs end).

``SeriesState.read`` takes what a scrape or ``firebreak status`` needs of any number of hosts
in a few queries, whatever the history's length: their series rows, the runs those rows point
at (by primary key, 500 a query), and their run totals. The questions (the
newest run and success, the newest verdict, failures since a success, lost sites, counters,
the duration histogram) are then answered from it without the database. The functions below
taking an engine read one host's state and ask it one question.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, func, select
from sqlalchemy.orm import Session

from firebreak.history.models import Run, RunTotal, Series
from firebreak.history.series import DURATION_BUCKETS, WHOLE_REPOSITORY, bucket_name
from firebreak.outcomes import Operation, site_losses

# The pointers a series keeps, by the run each names.
POINTERS = ("last_run_id", "last_success_id", "first_success_id", "last_verdict_id")
IDENTITY = "last_identity_id"

# Runs fetched per query (by primary key).
CHUNK = 500

# Other hosts' sites at the same repository as each of this host's sites: site → [(host, site)].
Peers = Mapping[str, Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class Latest:
    """The newest run and the newest successful run of one source (None: any) at one site."""

    source: str | None
    site: str
    last_attempt: Run | None
    last_success: Run | None


@dataclass(frozen=True)
class RunCount:
    source: str | None  # None: a run of the whole repository (check)
    site: str
    operation: str
    status: str
    count: int


@dataclass(frozen=True)
class Durations:
    """One operation's finished runs in the histogram's buckets."""

    operation: str
    # (upper bound, runs that took at most that long), every bucket, +Inf last.
    buckets: list[tuple[str, int]]
    seconds: float


@dataclass(frozen=True)
class SeriesState:
    """What the series tables say of some hosts at one moment."""

    # host → its series rows (columns as attributes, as Series has them).
    series: dict[str, list[Row[Any]]]
    # Every run those series point at, detached, by id.
    runs: dict[int, Run]
    # host → its run totals rows (columns as attributes, as RunTotal has them).
    totals: dict[str, list[Row[Any]]] = field(default_factory=dict)

    @classmethod
    def read(
        cls,
        engine: Engine,
        hosts: Collection[str],
        operations: Collection[Operation] | None = None,
        *,
        site: str | None = None,
        pointers: Collection[str] = (*POINTERS, IDENTITY),
        totals: bool = False,
    ) -> SeriesState:
        """The series of these hosts (of these operations, at this site), the runs their
        pointers name, and (totals) their run totals."""

        def narrowed(query: Any, table: type[Series] | type[RunTotal]) -> Any:
            query = query.where(table.host.in_(sorted(hosts)))
            if operations is not None:
                query = query.where(table.operation.in_(sorted(operations)))
            if site is not None:
                query = query.where(table.site == site)
            return query

        if not hosts:
            return cls({}, {})
        with Session(engine, expire_on_commit=False) as session:
            rows = session.execute(narrowed(select(Series.__table__), Series)).all()
            # The runs these rows name, by id: asking the series table again could meet
            # pointers a run that ended meanwhile moved, and miss the runs the rows name.
            wanted = sorted({getattr(row, name) for row in rows for name in pointers} - {None})
            runs: dict[int, Run] = {}
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                runs.update(
                    (run.id, run) for run in session.scalars(select(Run).where(Run.id.in_(chunk)))
                )
            session.expunge_all()
            counted: list[Row[Any]] = []
            if totals:
                counted = list(session.execute(narrowed(select(RunTotal.__table__), RunTotal)))
        series: dict[str, list[Row[Any]]] = {host: [] for host in hosts}
        for row in rows:
            series[row.host].append(row)
        by_host: dict[str, list[Row[Any]]] = {host: [] for host in hosts}
        for row in counted:
            by_host[row.host].append(row)
        return cls(series, runs, by_host)

    def rows(
        self, host: str, operation: Operation | None = None, site: str | None = None
    ) -> list[Row[Any]]:
        """The host's series rows (of this operation, at this site)."""
        return [
            row
            for row in self.series.get(host, ())
            if (operation is None or row.operation == operation)
            and (site is None or row.site == site)
        ]

    def _run(self, run_id: int | None) -> Run | None:
        return None if run_id is None else self.runs.get(run_id)

    def latest(
        self,
        host: str,
        operation: Operation = Operation.BACKUP,
        sources: Iterable[str] | None = None,
    ) -> dict[tuple[str, str], Latest]:
        """Latest attempt and latest success per (source, site) of this host. (Another
        host's source of the same name is another source.)"""
        wanted = None if sources is None else set(sources)
        return {
            (row.source, row.site): Latest(
                row.source, row.site, self._run(row.last_run_id), self._run(row.last_success_id)
            )
            for row in self.rows(host, operation)
            if row.source != WHOLE_REPOSITORY and (wanted is None or row.source in wanted)
        }

    def site_latest(
        self, host: str, operation: Operation, peers: Peers | None = None
    ) -> dict[str, Latest]:
        """Latest attempt and latest success of this host per site, whatever source a run was
        recorded under (for operations on the whole repository: check); with peers,
        whichever host sharing the repository ran it."""
        attempts = self.newest_per_site(host, operation, "last_run_id", peers=peers)
        successes = self.newest_per_site(host, operation, "last_success_id", peers=peers)
        return {
            site: Latest(None, site, attempts.get(site), successes.get(site))
            for site in attempts.keys() | successes.keys()
        }

    def newest_per_site(
        self,
        host: str,
        operation: Operation | None,
        pointer: str,
        site: str | None = None,
        *,
        peers: Peers | None = None,
    ) -> dict[str, Run]:
        """Per site, the newest run a pointer of this host's series there points at (and of
        the peers' series at the same repository: their hosts must have been read)."""
        newest: dict[str, int] = {}

        def consider(mine: str, rows: Iterable[Row[Any]]) -> None:
            for row in rows:
                run_id = getattr(row, pointer)
                if run_id is not None and run_id > newest.get(mine, 0):
                    newest[mine] = run_id

        for row in self.rows(host, operation, site):
            consider(row.site, [row])
        for mine, others in (peers or {}).items():
            for other_host, other_site in others:
                consider(mine, self.rows(other_host, operation, other_site))
        return {name: self.runs[run_id] for name, run_id in newest.items() if run_id in self.runs}

    def first_successes(self, host: str) -> dict[tuple[str, str], datetime]:
        """When this host's oldest recorded successful backup of each source at each site
        started (a site's drills are overdue some days after it, even if none ever ran)."""
        firsts = {
            (row.source, row.site): self._run(row.first_success_id)
            for row in self.rows(host, Operation.BACKUP)
            if row.source != WHOLE_REPOSITORY
        }
        return {key: run.started_at for key, run in firsts.items() if run is not None}

    def failures(
        self, host: str, operation: Operation = Operation.BACKUP
    ) -> dict[tuple[str, str], int]:
        """This host's failed runs since its last success, per (source, site)."""
        return {
            (row.source, row.site): row.failures
            for row in self.rows(host, operation)
            if row.source != WHOLE_REPOSITORY and row.failures
        }

    def verdicts(self, host: str, operation: Operation) -> dict[tuple[str, str], Run]:
        """Per (source, site), this host's newest run of this operation with a verdict on the
        data."""
        found = {
            (row.source, row.site): self._run(row.last_verdict_id)
            for row in self.rows(host, operation)
            if row.source != WHOLE_REPOSITORY
        }
        return {key: run for key, run in found.items() if run is not None}

    def site_verdicts(
        self, host: str, operation: Operation, peers: Peers | None = None
    ) -> dict[str, Run]:
        """Per site, this host's newest run of this operation with a verdict on the data,
        whichever source it was recorded under (a check covers the whole repository; another
        host's site of the same name may be another repository); with peers, whichever host
        sharing the repository ran it."""
        return self.newest_per_site(host, operation, "last_verdict_id", peers=peers)

    def lost(self, host: str, site: str | None = None) -> dict[str, Run]:
        """Sites whose newest run that reached a verdict on their repository found it lost
        (gone, or another in its place). A run that succeeded there since (the repository
        came back, or an operator reset the site) clears it; runs that could not reach the
        site say nothing."""
        newest = self.newest_per_site(host, None, IDENTITY, site)
        return {name: run for name, run in newest.items() if run.error_class in site_losses()}

    def counts(self, host: str) -> list[RunCount]:
        """This host's finished runs by source, site, operation and status (the counters)."""
        summed: dict[tuple[str, str, str, str], int] = {}
        for row in self.totals.get(host, ()):
            key = (row.source, row.site, row.operation, row.status)
            summed[key] = summed.get(key, 0) + int(row.runs)
        return [
            RunCount(source or None, site, operation, status, count)
            for (source, site, operation, status), count in summed.items()
        ]

    def durations(self, host: str) -> list[Durations]:
        """This host's finished runs per operation, in the duration histogram's buckets."""
        per: dict[str, dict[str, tuple[int, float]]] = {}
        for row in self.totals.get(host, ()):
            runs, seconds = per.setdefault(row.operation, {}).get(row.le, (0, 0.0))
            per[row.operation][row.le] = (runs + int(row.runs), seconds + float(row.seconds))
        histograms = []
        for operation, by_le in sorted(per.items()):
            counted, cumulative = 0, []
            for bound in DURATION_BUCKETS:
                counted += by_le.get(bucket_name(bound), (0, 0.0))[0]
                cumulative.append((bucket_name(bound), counted))
            total = sum(seconds for _runs, seconds in by_le.values())
            histograms.append(Durations(operation, cumulative, total))
        return histograms


def peer_hosts(host: str, peers: Peers | None) -> set[str]:
    """The host and every host sharing a repository with it (whose series a state must hold
    to answer with peers)."""
    return {host, *(other for others in (peers or {}).values() for other, _site in others)}


def latest_runs(
    engine: Engine,
    operation: Operation = Operation.BACKUP,
    sources: Iterable[str] | None = None,
    *,
    host: str,
) -> dict[tuple[str, str], Latest]:
    """SeriesState.latest of one host."""
    pointers = ("last_run_id", "last_success_id")
    state = SeriesState.read(engine, [host], [operation], pointers=pointers)
    return state.latest(host, operation, sources)


def latest_site_runs(
    engine: Engine, operation: Operation, *, host: str, peers: Peers | None = None
) -> dict[str, Latest]:
    """SeriesState.site_latest of one host (and its peers)."""
    state = SeriesState.read(
        engine, peer_hosts(host, peers), [operation], pointers=("last_run_id", "last_success_id")
    )
    return state.site_latest(host, operation, peers)


def first_successes(engine: Engine, *, host: str) -> dict[tuple[str, str], datetime]:
    """SeriesState.first_successes of one host."""
    state = SeriesState.read(engine, [host], [Operation.BACKUP], pointers=["first_success_id"])
    return state.first_successes(host)


def consecutive_failures(
    engine: Engine, operation: Operation = Operation.BACKUP, *, host: str
) -> dict[tuple[str, str], int]:
    """SeriesState.failures of one host."""
    return SeriesState.read(engine, [host], [operation], pointers=()).failures(host, operation)


def latest_verdicts(
    engine: Engine, operation: Operation, *, host: str
) -> dict[tuple[str, str], Run]:
    """SeriesState.verdicts of one host."""
    state = SeriesState.read(engine, [host], [operation], pointers=["last_verdict_id"])
    return state.verdicts(host, operation)


def latest_site_verdicts(
    engine: Engine, operation: Operation, *, host: str, peers: Peers | None = None
) -> dict[str, Run]:
    """SeriesState.site_verdicts of one host (and its peers)."""
    state = SeriesState.read(
        engine, peer_hosts(host, peers), [operation], pointers=["last_verdict_id"]
    )
    return state.site_verdicts(host, operation, peers)


def lost_sites(engine: Engine, host: str, site: str | None = None) -> dict[str, Run]:
    """SeriesState.lost of one host (site: that site only, before each run there)."""
    return SeriesState.read(engine, [host], site=site, pointers=[IDENTITY]).lost(host, site)


def run_counts(engine: Engine, *, host: str) -> list[RunCount]:
    """SeriesState.counts of one host."""
    return SeriesState.read(engine, [host], pointers=(), totals=True).counts(host)


def durations(engine: Engine, *, host: str) -> list[Durations]:
    """SeriesState.durations of one host."""
    return SeriesState.read(engine, [host], pointers=(), totals=True).durations(host)


def last_success(engine: Engine, source: str, *, host: str) -> Run | None:
    """This host's newest successful backup of the source, at any site."""
    state = SeriesState.read(engine, [host], [Operation.BACKUP], pointers=["last_success_id"])
    found = [entry.last_success for entry in state.latest(host, sources=[source]).values()]
    return max((run for run in found if run is not None), key=lambda run: run.id, default=None)


def finished_runs(engine: Engine, site: str, operation: Operation, *, host: str) -> int:
    """How many of this host's runs of this operation at this site have ended, whatever
    their outcome (counted by the totals: retention does not change it)."""
    query = select(func.coalesce(func.sum(RunTotal.runs), 0)).where(
        RunTotal.host == host, RunTotal.site == site, RunTotal.operation == operation
    )
    with Session(engine) as session:
        return int(session.scalar(query) or 0)


def newest_since(
    engine: Engine,
    operation: Operation,
    at: Iterable[tuple[str, str]],
    since: datetime,
    *,
    verdict: bool = False,
) -> Run | None:
    """The newest successful run of the operation (verdict: that reached a verdict on the
    data, passed or not) at any of these (host, site) series, if it started since then:
    a prune or check one of the hosts sharing a repository did already."""
    pointer = "last_verdict_id" if verdict else "last_success_id"
    wanted = set(at)
    state = SeriesState.read(
        engine, {host for host, _site in wanted}, [operation], pointers=[pointer]
    )
    runs = [
        state.runs.get(getattr(row, pointer))
        for host, site in wanted
        for row in state.rows(host, operation, site)
    ]
    recent = [run for run in runs if run is not None and run.started_at >= since]
    return max(recent, key=lambda run: run.id, default=None)


def site_is_lost(engine: Engine, host: str, site: str) -> bool:
    """lost_sites for one site (before each run there)."""
    return bool(lost_sites(engine, host, site))


def versions(engine: Engine) -> dict[str, tuple[int, ...]]:
    """A token per host that changes whenever one of its series gets a newer run or one of
    its runs ends: the newest-run pointer only moves up (or a series is added), an end adds
    to the totals, and neither goes back (two scans of the small tables; the fleet
    exporter's cache compares them)."""
    pointers = [func.coalesce(func.sum(getattr(Series, name)), 0) for name in (*POINTERS, IDENTITY)]
    series = select(Series.host, func.count(), *pointers, func.sum(Series.failures)).group_by(
        Series.host
    )
    totals = select(RunTotal.host, func.sum(RunTotal.runs)).group_by(RunTotal.host)
    tokens: dict[str, tuple[int, ...]] = {}
    with engine.connect() as connection:
        for host, *sums in connection.execute(series):
            tokens[host] = tuple(int(value or 0) for value in sums)
        for host, runs in connection.execute(totals):
            tokens[host] = (*tokens.get(host, ()), int(runs or 0))
    return tokens
