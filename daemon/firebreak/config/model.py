"""The configuration model: every key a sysadmin may write, with its default and meaning.

The JSON schema (``config/schema.json``), the sample config (``config/firebreak.example.yaml``)
and ``docs/configuration.md`` are generated from these classes (see ``generate.py``).
"""

from __future__ import annotations

import shutil
import socket
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from firebreak.config.base import (
    BCRYPT_HASH,
    DEFAULT_STATE_DIR,
    LISTEN_PATTERN,
    Duration,
    Name,
    Strict,
    absolute,
    checking,
)
from firebreak.config.dumps import FILE_NAME_PATTERN, DumpKind, MariaDB, PostgreSQL, SQLite
from firebreak.config.hooks import Hooks
from firebreak.config.notify import Healthchecks, Notify
from firebreak.config.placement import PlacementPolicy, SourcePlacement
from firebreak.config.schedules import ScheduleText
from firebreak.config.site import Location as Location
from firebreak.config.site import Site as Site


class Retention(Strict):
    """Which snapshots ``restic forget --prune`` keeps at each site (restic's keep rules)."""

    keep_last: int | None = Field(default=None, ge=1, description="The newest N snapshots.")
    keep_hourly: int | None = Field(default=None, ge=1, description="One per hour, N hours.")
    keep_daily: int | None = Field(default=None, ge=1, description="One per day, N days.")
    keep_weekly: int | None = Field(default=None, ge=1, description="One per week, N weeks.")
    keep_monthly: int | None = Field(default=None, ge=1, description="One per month, N months.")
    keep_yearly: int | None = Field(default=None, ge=1, description="One per year, N years.")
    keep_within: Duration | None = Field(
        default=None, description="Every snapshot younger than this."
    )
    keep_tags: list[str] = Field(
        default_factory=list, description="Every snapshot with one of these tags."
    )
    schedule: ScheduleText = Field(
        default="30 4 * * *",
        description="When the daemon applies it: cron (crontab(5)), or 'every DURATION'.",
    )

    @model_validator(mode="after")
    def _some_rule(self) -> Retention:
        rules = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
            self.keep_within,
        ]
        if all(rule is None for rule in rules) and not self.keep_tags:
            raise ValueError("give at least one keep_* rule, or leave retention out")
        return self


_KINDS = ("paths", "postgresql", "mariadb", "sqlite", "command")


class Source(Strict):
    """What is backed up, and how fresh its copies must stay: files (paths), or the output
    of a program (a database dump, or any command), made once per cycle and stored at every
    site. Give exactly one of paths, postgresql, mariadb, sqlite and command."""

    paths: list[Path] = Field(
        default_factory=list,
        description="Files and directories to back up (absolute, or relative to this file).",
        examples=[["/var/www", "/etc/nginx"]],
    )
    postgresql: PostgreSQL | None = Field(
        default=None, description="Dump databases of a PostgreSQL server (docs/databases.md)."
    )
    mariadb: MariaDB | None = Field(
        default=None, description="Dump databases of a MariaDB or MySQL server."
    )
    sqlite: SQLite | None = Field(default=None, description="Copy an SQLite database, online.")
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "A program whose standard output is what is backed up (slapcat, redis-cli --rdb -, "
            "etcdctl snapshot ...), run once per cycle without a shell. It must exit 0."
        ),
        examples=[["slapcat", "-n", "1"]],
    )
    stdin_filename: str | None = Field(
        default=None,
        pattern=FILE_NAME_PATTERN,
        description="With command: the file name its output is stored and restored as.",
        examples=["ldap.ldif"],
    )
    dump_timeout: Duration = Field(
        default=timedelta(hours=6),
        description="A dump (database or command) is stopped, and the cycle fails, after this.",
    )
    dump_stall_timeout: Duration = Field(
        default=timedelta(minutes=10),
        description="A dump that neither reads nor writes for this long is stopped.",
    )
    hooks: Hooks | None = Field(
        default=None,
        description="Commands around each cycle; a phase not given here takes the global one.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="restic --exclude patterns.", examples=[["*.tmp"]]
    )
    exclude_if_present: list[str] = Field(
        default_factory=list,
        description="Skip directories holding a file of this name (restic --exclude-if-present).",
        examples=[[".nobackup"]],
    )
    one_file_system: bool = Field(
        default=False, description="Do not cross filesystem boundaries (restic --one-file-system)."
    )
    tags: list[Name] = Field(
        default_factory=list, description="Extra restic tags on every snapshot of this source."
    )
    sites: list[Name] = Field(
        min_length=1,
        description="The sites this source is backed up to, by name.",
        examples=[["gra", "fra", "lon"]],
    )
    max_age: Duration = Field(
        default=timedelta(hours=26),
        description="A site is fresh for this source while its last success is younger than this.",
    )
    min_fresh_sites: int | None = Field(
        default=None,
        ge=1,
        description=(
            "The source is safe while at least this many of its sites are fresh, not damaged "
            "(a failed restore drill or check) and not lost. Default: all but one, so that "
            "one site down is a warning and the source survives losing any one place "
            "(docs/placement.md)."
        ),
    )
    placement: SourcePlacement = Field(
        default_factory=SourcePlacement,
        description="Tighten the global placement policy for this source.",
    )
    retention: Retention | None = Field(
        default=None,
        description="Forget and prune old snapshots at every site (none: keep everything).",
    )
    healthchecks: Healthchecks = Field(
        default_factory=Healthchecks,
        description="Dead-man's-switch pings for this source's cycles.",
    )
    schedule: ScheduleText = Field(
        default="0 3 * * *",
        description=(
            "When the daemon runs a cycle: a crontab(5) line in the config's timezone (0 and 7 "
            "are Sunday; names such as mon-fri), or 'every DURATION' (every 6h, every 30s)."
        ),
        examples=["15 2 * * *", "every 6h"],
    )

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        return [absolute(path, info) for path in value]

    @field_validator("sites")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"site listed twice: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        given = [kind for kind in _KINDS if getattr(self, kind)]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            raise ValueError(
                f"give exactly one of paths, postgresql, mariadb, sqlite, command (found {found})"
            )
        if (self.command is None) != (self.stdin_filename is None):
            raise ValueError("command and stdin_filename go together")
        return self

    @model_validator(mode="after")
    def _dump_programs(self, info: ValidationInfo) -> Source:
        """The programs a dump needs, found now rather than at the first cycle."""
        if not checking(info):
            return self
        needed: list[tuple[str, ...]] = []
        if self.postgresql is not None:
            needed.append(("pg_dump",))
            if self.postgresql.databases == "all":
                needed.append(("psql",))
            if self.postgresql.with_globals:
                needed.append(("pg_dumpall",))
        if self.mariadb is not None:
            needed.append(("mariadb-dump", "mysqldump"))
        if self.command is not None:
            needed.append((self.command[0],))
        missing = [
            " or ".join(names) for names in needed if not any(shutil.which(name) for name in names)
        ]
        if missing:
            raise ValueError(f"the dump needs {', '.join(missing)}, not found (or not executable)")
        return self

    @property
    def dump_kind(self) -> DumpKind | None:
        """What kind of dump the source is, or None for files."""
        kinds: tuple[DumpKind, ...] = ("postgresql", "mariadb", "sqlite", "command")
        return next((kind for kind in kinds if getattr(self, kind)), None)

    @model_validator(mode="after")
    def _enough_sites(self) -> Source:
        if self.min_fresh_sites is not None and self.min_fresh_sites > len(self.sites):
            raise ValueError(
                f"min_fresh_sites is {self.min_fresh_sites} but the source has only "
                f"{len(self.sites)} sites"
            )
        return self

    @property
    def required_fresh_sites(self) -> int:
        if self.min_fresh_sites is not None:
            return self.min_fresh_sites
        return max(len(self.sites) - 1, 1)


class Database(Strict):
    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the run history. Default: SQLite in state_dir. For fleets: "
            "postgresql+psycopg://user@host/firebreak (may contain ${ENV_VAR} references)."
        ),
        examples=["postgresql+psycopg://firebreak@db.example.net/firebreak"],
    )
    keep_runs: Duration | None = Field(
        default=None,
        description=(
            "How long this host's runs stay in the history (for example 400d). The daemon "
            "prunes older ones every hour, in small batches; the newest run, success and "
            "verdict of every source at every site stay whatever their age, and the run "
            "counters keep counting pruned runs. Default: keep every run."
        ),
        examples=["400d"],
    )

    @field_validator("keep_runs")
    @classmethod
    def _keep_a_day(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(days=1):
            raise ValueError(
                "keep at least 1d of history: catch-up, drills and the counters read it"
            )
        return value


class Restic(Strict):
    binary: str = Field(
        default="restic", description="The restic program (a path or a name on PATH)."
    )
    cache_dir: Path | None = Field(
        default=None, description="restic's cache directory. Default: state_dir/cache."
    )

    @field_validator("cache_dir")
    @classmethod
    def _absolute_cache(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else absolute(value, info)


class MetricsTLS(Strict):
    cert_file: Path = Field(description="PEM certificate (chain) for the endpoint.")
    key_file: Path = Field(description="PEM private key of the certificate.")

    @field_validator("cert_file", "key_file")
    @classmethod
    def _readable(cls, value: Path, info: ValidationInfo) -> Path:
        path = absolute(value, info)
        if checking(info) and not path.is_file():
            raise ValueError(f"file {path} does not exist")
        return path


class Metrics(Strict):
    listen: str = Field(
        default="127.0.0.1:9188",
        pattern=LISTEN_PATTERN,
        description="host:port the daemon serves /metrics on.",
    )
    tls: MetricsTLS | None = Field(default=None, description="Serve HTTPS with this certificate.")
    basic_auth_users: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Users allowed to read /metrics, name → bcrypt hash (htpasswd -nBC 10 NAME). "
            "/healthz and /readyz stay open."
        ),
        examples=[{"prometheus": "$2y$10$..."}],
    )

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name, hashed in value.items() if not BCRYPT_HASH.fullmatch(hashed)]
        if bad:
            raise ValueError(
                f"not a bcrypt hash for {', '.join(bad)}: store hashes, never passwords "
                "(htpasswd -nBC 10 NAME)"
            )
        return value


class Daemon(Strict):
    """How ``firebreak run`` schedules cycles and stops."""

    jitter: Duration | None = Field(
        default=None,
        description="Start each scheduled cycle up to this much later, at random (for fleets).",
    )
    misfire_grace_time: Duration = Field(
        default=timedelta(hours=1),
        description="A cycle whose time passed while the daemon was busy or asleep still runs "
        "if this late or less; later than that, catch-up decides.",
    )
    catch_up_stagger: Duration = Field(
        default=timedelta(seconds=30),
        description="Space between overdue cycles started at once by catch-up.",
    )
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=30),
        description="On SIGTERM, how long restic gets to stop after SIGINT before SIGKILL.",
    )
    heartbeat: Duration = Field(
        default=timedelta(minutes=1),
        description=(
            "How often the daemon records in the history that it is alive (and what its "
            "sources ask). `firebreak status --fleet` and `firebreak exporter --fleet` call "
            "a host silent after three missed heartbeats."
        ),
    )


class Retry(Strict):
    """Retries of transient failures (unreachable, locked, timeout, stalled) by the daemon."""

    attempts: int = Field(
        default=3, ge=0, le=20, description="Retries after the first try (0: never retry)."
    )
    initial_delay: Duration = Field(
        default=timedelta(seconds=30), description="Wait before the first retry; doubles each time."
    )
    max_delay: Duration = Field(
        default=timedelta(minutes=15), description="The longest wait between two tries."
    )


class Config(Strict):
    """The whole firebreak.yaml."""

    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR,
        description="Where firebreak keeps its database and restic cache.",
    )
    database: Database = Field(default_factory=Database, description="The run history.")
    restic: Restic = Field(default_factory=Restic, description="How restic is run.")
    max_parallel_runs: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description=(
            "restic processes running at once, all sources together. Default: as many as "
            "the source with the most sites has (at least 2), so a cycle runs at every site "
            "at once and the slowest site sets its time (docs/performance.md)."
        ),
    )
    max_parallel_local_runs: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description=(
            "Of those, runs at local sites (a path on this host: CPU and disk work, not "
            "network) at once. Default: this host's CPU cores, or the most local sites any "
            "source has if that is more, so that one cycle's local sites never wait for each "
            "other (docs/performance.md)."
        ),
    )
    metrics: Metrics = Field(default_factory=Metrics, description="The Prometheus endpoint.")
    notify: Notify = Field(default_factory=Notify, description="Webhooks after cycles.")
    host: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[^\s/]+$",
        description=(
            "This machine's name in the run history and in restic's snapshots (--host): its "
            "freshness, catch-up, metrics and retention see only its own runs. Default: the "
            "hostname. Set it when two machines share a hostname, or to keep the history of "
            "a machine renamed. A reload applies a change: the runs after it are the new "
            "name's."
        ),
        examples=["web1"],
    )
    location: Location | None = Field(
        default=None,
        description=(
            "Where this machine is, with the same fields as a site's. Placement then counts "
            "each source's offsite sites (placement.min_offsite), and the what-if table "
            "includes losing this machine's datacenter."
        ),
    )
    # The hostname when the config was read (host_name).
    _hostname: str = PrivateAttr(default_factory=socket.gethostname)
    # The file it was loaded from, as config/fingerprint.py hashes it; None when parsed
    # from text.
    _fingerprint: str | None = PrivateAttr(default=None)
    timezone: str = Field(
        default="UTC",
        description="Time zone of cron schedules (an IANA name such as Europe/Paris).",
    )
    daemon: Daemon = Field(default_factory=Daemon, description="Scheduling and shutdown.")
    retry: Retry = Field(default_factory=Retry, description="Retries of transient failures.")
    hooks: Hooks = Field(
        default_factory=Hooks,
        description="Commands around every source's cycles, unless the source has its own.",
    )
    placement: PlacementPolicy = Field(
        default_factory=PlacementPolicy,
        description="Where copies may be: the policy every source inherits and may tighten.",
    )
    sites: dict[Name, Site] = Field(min_length=1, description="Restic repositories by name.")
    sources: dict[Name, Source] = Field(min_length=1, description="What is backed up, by name.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a known time zone (such as UTC or Europe/Paris)"
            ) from None
        return value

    @field_validator("state_dir")
    @classmethod
    def _absolute_state(cls, value: Path, info: ValidationInfo) -> Path:
        return absolute(value, info)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.state_dir / 'firebreak.db'}"

    @property
    def host_name(self) -> str:
        """The name this machine's runs are recorded under: host, or the hostname as it
        was when the config was read (a machine renamed later keeps the name until a
        reload)."""
        return self.host or self._hostname

    @property
    def fingerprint(self) -> str | None:
        return self._fingerprint

    @property
    def run_limit(self) -> int:
        """restic processes at once: max_parallel_runs, or enough for one cycle at every
        site of the source with the most."""
        if self.max_parallel_runs is not None:
            return self.max_parallel_runs
        return max([2, *(len(source.sites) for source in self.sources.values())])

    @property
    def cache_dir(self) -> Path:
        return self.restic.cache_dir or self.state_dir / "cache"

    @property
    def locks_dir(self) -> Path:
        """Where firebreak's processes on this host take turns (actions/flocks.py)."""
        return self.state_dir / "locks"

    def site_cache_dir(self, site: str) -> Path:
        """restic's cache for one site: restic keeps a directory per repository there, named
        by the repository's id, which tells firebreak which repository a run opened."""
        return self.cache_dir / "sites" / site
