"""The one collector: everything is computed from the run history when Prometheus scrapes,
so a restart resets nothing and a scrape never waits on a running backup (it reads rows)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from firebreak import __version__
from firebreak.clock import Deadline, utcnow
from firebreak.config.model import Config
from firebreak.fleet import HostProfile, peers
from firebreak.history.database import DatabaseError, schema_advice, schema_state
from firebreak.history.freshness import Proof, SourceFreshness, freshness
from firebreak.history.latest import (
    Durations,
    Latest,
    Peers,
    RunCount,
    SeriesState,
    peer_hosts,
)
from firebreak.outcomes import FINAL_STATUSES, Operation, Status
from firebreak.scorecard import proven_immutable, proven_mutable, scorecard

log = logging.getLogger(__name__)

OUTCOMES = (Status.RUNNING, *FINAL_STATUSES)


@dataclass
class ScrapeInputs:
    """Where the collector gets what it reads, asked afresh at every scrape (the daemon swaps
    its config and runtime on reload)."""

    config: Callable[[], Config]
    engine: Callable[[], Engine]
    restic_version: Callable[[], str]
    reload_ok: Callable[[], bool | None] = lambda: None
    # The host whose runs are exported (None: the config's host).
    host: Callable[[], str] | None = None
    # Ends of runs and cycles waiting for the history (the daemon's; None: an exporter).
    unwritten: Callable[[], int] | None = None

    def host_name(self) -> str:
        return self.host() if self.host is not None else self.config().host_name


class FirebreakCollector(Collector):
    def __init__(self, inputs: ScrapeInputs) -> None:
        self.inputs = inputs
        # Why the history could not be read at the last scrape: said once, not every scrape.
        self._trouble: str | None = None
        self._trouble_lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        config = self.inputs.config()
        info = GaugeMetricFamily(
            "firebreak_build_info",
            "firebreak and restic versions",
            labels=["version", "restic_version"],
        )
        info.add_metric([__version__, self.inputs.restic_version()], 1)
        yield info
        reload_ok = self.inputs.reload_ok()
        if reload_ok is not None:
            yield GaugeMetricFamily(
                "firebreak_config_last_reload_successful",
                "1 if the last SIGHUP reload was accepted, 0 if it was rejected",
                value=1 if reload_ok else 0,
            )
        if self.inputs.unwritten is not None:
            yield GaugeMetricFamily(
                "firebreak_history_unwritten",
                "Ends of runs and cycles the run history could not take yet (written when it "
                "answers again)",
                value=self.inputs.unwritten(),
            )
        database_up = GaugeMetricFamily("firebreak_database_up", "1 if the run history answered")
        try:
            engine = self.inputs.engine()
            state = schema_state(engine)
            if not state.up_to_date:
                # Rows of another revision may read, or may not: neither is an answer.
                raise _NotCurrent(schema_advice(state))
            now = utcnow()
            host = self.inputs.host_name()
            profile = HostProfile.of(config, now)
            shares = peers(engine, host, profile.repositories())
            history = SeriesState.read(engine, peer_hosts(host, shares), totals=True)
            metrics = host_metrics(profile, history, host, now, shares)
        except Exception as exc:  # a scrape must answer even when the database does not
            self._complain(history_trouble(self.inputs.engine, exc))
            log.debug("reading the run history for /metrics failed", exc_info=True)
            database_up.add_metric([], 0)
            yield database_up
            return
        self._complain(None)
        database_up.add_metric([], 1)
        yield database_up
        yield from metrics

    def _complain(self, trouble: str | None) -> None:
        """Log why the history cannot be read when that changes (and when it is back)."""
        with self._trouble_lock:
            before, self._trouble = self._trouble, trouble
        if trouble is not None and trouble != before:
            log.error("cannot read the run history for /metrics: %s", trouble)
        elif trouble is None and before is not None:
            log.info("the run history can be read again")


class _NotCurrent(Exception):
    """The history is not at this firebreak's schema revision."""


def history_trouble(engine: Callable[[], Engine], exc: Exception) -> str:
    """One line for a person: why the history could not be read (a schema that is missing or
    behind says what to run)."""
    if isinstance(exc, _NotCurrent | DatabaseError):
        return str(exc)
    try:
        state = schema_state(engine())
    except DatabaseError as cause:
        return str(cause)
    except Exception:  # the engine itself could not be had: say what the first error was
        state = None
    if state is not None and not state.up_to_date:
        return schema_advice(state)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {reason[0] if reason else ''}"


def host_metrics(
    profile: HostProfile,
    state: SeriesState,
    host: str,
    now: datetime,
    shares: Peers | None = None,
    deadline: Deadline | None = None,
) -> list[Metric]:
    """Every metric of one host's runs, judged against its profile (shares: its sites'
    peers, whose checks count for it; the state holds their series too). A deadline notes
    the soonest time a metric would change by time alone."""
    latest = state.latest(host)
    checks = state.site_latest(host, Operation.CHECK, shares)
    # Drills are due only where they are scheduled (drill_schedule: null turns them off).
    drilled = {name for name, site in profile.sites.items() if site.drill_interval_seconds}
    proof = Proof.of(state, host, shares)
    first = {key: began for key, began in proof.first_success.items() if key[1] in drilled}
    report = freshness(profile.objectives(), latest, now, proof, deadline)
    site_checks = [((site,), entry) for site, entry in checks.items()]
    proofs = state.site_latest(host, Operation.IMMUTABILITY)
    return [
        *_site_metrics(report, latest, state.failures(host), first),
        *_source_metrics(profile, report),
        *_site_flags(profile, proof, now, deadline),
        *_rule_metrics(profile, report, proof, now, deadline),
        *_proof_metrics(Operation.CHECK, "restic check of the site", site_checks, ["site"]),
        *_proof_metrics(
            Operation.IMMUTABILITY,
            "immutability proof at the site (a refused delete)",
            [((site,), entry) for site, entry in proofs.items()],
            ["site"],
        ),
        *_proof_metrics(
            Operation.DRILL,
            "restore drill at the site",
            proof.drill_runs.items(),
            ["source", "site"],
        ),
        *_counters(state.counts(host)),
        _histogram(state.durations(host)),
        *_schedule_metrics(profile),
    ]


SITE_GAUGES = {
    "firebreak_last_success_timestamp_seconds": (
        "Start of the newest successful backup (the point in time it holds)"
    ),
    "firebreak_last_attempt_timestamp_seconds": "Start of the newest backup try",
    "firebreak_first_success_timestamp_seconds": (
        "Start of the oldest recorded successful backup (restore drills are due some days after)"
    ),
    "firebreak_consecutive_failures": "Failed backups since the last success",
    "firebreak_last_duration_seconds": "Duration of the newest finished backup try",
    "firebreak_last_bytes_added": "Bytes the newest successful backup added",
    "firebreak_last_files_new": "New files in the newest successful backup",
    "firebreak_last_files_changed": "Changed files in the newest successful backup",
    "firebreak_site_fresh": "1 if the site's last success is younger than the source's max_age",
    "firebreak_site_damaged": (
        "1 if the newest restore drill or restic check that judged the site's data found it bad"
    ),
}
SOURCE_GAUGES = {
    "firebreak_source_max_age_seconds": "The source's max_age: the freshness objective",
    "firebreak_source_fresh_sites": "Sites that are fresh and not damaged",
    "firebreak_source_required_fresh_sites": "The source's min_fresh_sites",
    "firebreak_source_safe": (
        "1 if at least min_fresh_sites sites are fresh, not damaged and not lost"
    ),
    "firebreak_source_placement_degraded": (
        "1 if losing one datacenter (or one value of another domain the policy keeps "
        "distinct) would leave fewer sites than min_fresh_sites"
    ),
}


def _site_metrics(
    report: list[SourceFreshness],
    latest: dict[tuple[str, str], Latest],
    failures: dict[tuple[str, str], int],
    first: dict[tuple[str, str], datetime],
) -> Iterator[Metric]:
    gauges = {
        name: GaugeMetricFamily(name, text, labels=["source", "site"])
        for name, text in SITE_GAUGES.items()
    }
    outcome = GaugeMetricFamily(
        "firebreak_last_outcome",
        "1 for the outcome of the newest backup try, 0 for the others",
        labels=["source", "site", "outcome"],
    )

    def put(name: str, key: list[str], value: float) -> None:
        gauges[name].add_metric(key, value)

    for source in report:
        for site in source.sites:
            key = [source.source, site.site]
            put("firebreak_site_fresh", key, 1 if site.fresh else 0)
            put("firebreak_site_damaged", key, 1 if site.damaged else 0)
            put("firebreak_consecutive_failures", key, failures.get((source.source, site.site), 0))
            began = first.get((source.source, site.site))
            if began is not None:
                put("firebreak_first_success_timestamp_seconds", key, began.timestamp())
            if site.last_success_at is not None:
                put(
                    "firebreak_last_success_timestamp_seconds",
                    key,
                    site.last_success_at.timestamp(),
                )
            entry = latest.get((source.source, site.site))
            if entry is None or entry.last_attempt is None:
                continue
            last = entry.last_attempt
            put("firebreak_last_attempt_timestamp_seconds", key, last.started_at.timestamp())
            for name in OUTCOMES:
                outcome.add_metric([*key, name], 1 if last.status == name else 0)
            if last.duration_seconds is not None:
                put("firebreak_last_duration_seconds", key, last.duration_seconds)
            good = entry.last_success
            if good is not None:
                put("firebreak_last_bytes_added", key, good.bytes_added or 0)
                put("firebreak_last_files_new", key, good.files_new or 0)
                put("firebreak_last_files_changed", key, good.files_changed or 0)
    yield from gauges.values()
    yield outcome


def _site_flags(
    profile: HostProfile, proof: Proof, now: datetime, deadline: Deadline | None
) -> Iterator[Metric]:
    """Per configured site, 0 or 1: lost, damaged by a check, and what the newest
    immutability proof found."""

    def check_damaged(site: str) -> bool:
        verdict = proof.checks.get(site)
        return verdict is not None and verdict.status == Status.FAILED

    flags: list[tuple[str, str, Callable[[str], bool]]] = [
        (
            "firebreak_site_lost",
            "1 if the site's repository is gone or replaced by another (until it comes back "
            "or firebreak site reset records a new one)",
            lambda site: site in proof.lost,
        ),
        (
            "firebreak_site_check_damaged",
            "1 if the newest restic check that judged the site's repository found errors "
            "(every source there is damaged until a check passes), whatever checks run since",
            check_damaged,
        ),
        (
            "firebreak_site_immutable",
            "1 if the site is declared append_only and its newest immutability proof, within "
            "its schedule's gap plus a day (8 days at least), saw it refuse to delete",
            lambda site: proven_immutable(profile, proof, site, now, deadline),
        ),
        (
            "firebreak_site_not_immutable",
            "1 if the site is declared append_only and the newest immutability proof that "
            "reached a verdict saw it delete its canary snapshot (NotImmutable)",
            lambda site: proven_mutable(profile, proof, site),
        ),
    ]
    for name, text, holds in flags:
        family = GaugeMetricFamily(name, text, labels=["site"])
        for site in profile.sites:
            family.add_metric([site], 1 if holds(site) else 0)
        yield family


RULE_GAUGES = {
    "firebreak_source_rule_ok": "1 if the source meets this part of 3-2-1-1-0 now",
    "firebreak_source_rule_required": "1 if the source's placement policy requires this part",
    "firebreak_source_rule_current": (
        "Fresh copies, kinds of storage, offsite copies or proven-immutable copies the source "
        "has (verified: sites whose newest check or drill did not pass in time)"
    ),
}


def _rule_metrics(
    profile: HostProfile,
    report: list[SourceFreshness],
    proof: Proof,
    now: datetime,
    deadline: Deadline | None,
) -> Iterator[Metric]:
    """The 3-2-1-1-0 scorecard of every source, a series per rule."""
    gauges = {
        name: GaugeMetricFamily(name, text, labels=["source", "rule"])
        for name, text in RULE_GAUGES.items()
    }
    for source in report:
        for rule in scorecard(profile, source, proof, now, deadline).rules:
            key = [source.source, rule.rule]
            gauges["firebreak_source_rule_ok"].add_metric(key, 1 if rule.ok else 0)
            gauges["firebreak_source_rule_required"].add_metric(key, 1 if rule.required else 0)
            if rule.count is not None:
                gauges["firebreak_source_rule_current"].add_metric(key, rule.count)
    yield from gauges.values()


def _source_metrics(profile: HostProfile, report: list[SourceFreshness]) -> Iterator[Metric]:
    gauges = {
        name: GaugeMetricFamily(name, text, labels=["source"])
        for name, text in SOURCE_GAUGES.items()
    }
    worst = GaugeMetricFamily(
        "firebreak_source_worst_case_surviving_sites",
        "Fewest sites left after losing any one provider, region, country or datacenter",
        labels=["source", "domain"],
    )
    for source in report:
        key = [source.source]
        gauges["firebreak_source_max_age_seconds"].add_metric(key, source.max_age_seconds)
        gauges["firebreak_source_fresh_sites"].add_metric(key, source.fresh_sites)
        gauges["firebreak_source_required_fresh_sites"].add_metric(key, source.required_fresh_sites)
        gauges["firebreak_source_safe"].add_metric(key, 1 if source.safe else 0)
        placed = profile.sources[source.source]
        degraded = placed.placement_degraded
        gauges["firebreak_source_placement_degraded"].add_metric(key, 1 if degraded else 0)
        for domain, left in placed.worst_case.items():
            worst.add_metric([source.source, domain], left)
    yield from gauges.values()
    yield worst


def _proof_metrics(
    operation: Operation,
    what: str,
    latest: Iterable[tuple[tuple[str, ...], Latest]],
    labels: list[str],
) -> Iterator[Metric]:
    """When the newest passing run of a check or drill started, and how the newest one ended.
    labels: what the keys of latest are (a drill is per source and site, a check per site)."""
    success = GaugeMetricFamily(
        f"firebreak_last_{operation}_success_timestamp_seconds",
        f"Start of the newest passing {what}",
        labels=labels,
    )
    outcome = GaugeMetricFamily(
        f"firebreak_last_{operation}_outcome",
        f"1 for the outcome of the newest {what}, 0 for the others",
        labels=[*labels, "outcome"],
    )
    for key, entry in sorted(latest, key=lambda item: item[0]):
        if entry.last_success is not None:
            success.add_metric(list(key), entry.last_success.started_at.timestamp())
        if entry.last_attempt is not None:
            for name in OUTCOMES:
                state = 1 if entry.last_attempt.status == name else 0
                outcome.add_metric([*key, name], state)
    yield success
    yield outcome


def _counters(counts: list[RunCount]) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "firebreak_runs", "Finished restic runs", labels=["source", "site", "operation", "status"]
    )
    for row in counts:
        runs.add_metric([row.source or "", row.site, row.operation, row.status], row.count)
    yield runs


def _histogram(histograms: list[Durations]) -> Metric:
    family = HistogramMetricFamily(
        "firebreak_run_duration_seconds", "Duration of finished restic runs", labels=["operation"]
    )
    for histogram in histograms:
        family.add_metric([histogram.operation], histogram.buckets, sum_value=histogram.seconds)
    return family


def _schedule_metrics(profile: HostProfile) -> Iterator[Metric]:
    """How often checks and drills are due at each site (only where they are scheduled): the
    alerts that say they stopped compare the time since the last passing one with it."""
    for kind, what in (("check", "restic check"), ("drill", "restore drill")):
        family = GaugeMetricFamily(
            f"firebreak_{kind}_interval_seconds",
            f"How far apart the site's {kind}_schedule runs a {what}, around now",
            labels=["site"],
        )
        for name, site in profile.sites.items():
            gap = getattr(site, f"{kind}_interval_seconds")
            if gap is not None:
                family.add_metric([name], gap)
        yield family
