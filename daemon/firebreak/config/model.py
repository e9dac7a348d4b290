"""The configuration model: every key a sysadmin may write, with its default and meaning.

The JSON schema (``config/schema.json``), the sample config (``config/firebreak.example.yaml``)
and ``docs/configuration.md`` are generated from these classes (see ``reference.py``).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from firebreak.config.base import Strict
from firebreak.config.durations import DURATION_PATTERN, format_duration, parse_duration
from firebreak.config.placement import PlacementPolicy, SourcePlacement
from firebreak.config.references import (
    ENV_ONLY,
    FILE_PREFIX,
    check_reference,
    file_reference_path,
    is_file_reference,
    missing_variables,
)
from firebreak.config.schedules import Schedule, parse_schedule

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
LISTEN_PATTERN = r"^\[?[0-9A-Za-z.:-]*\]?:\d{1,5}$"
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"
# restic backends are written "name:..." (rest:, sftp:, s3:, rclone:, b2:, local: ...).
BACKEND_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]*:")
DEFAULT_STATE_DIR = Path("/var/lib/firebreak")


def _to_duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit: write it as {int(value)}s, or use m, h, d")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["26h"]}),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _checking(info: ValidationInfo) -> bool:
    """True when the caller asked to check files and environment variables (``validate``,
    the start of a backup), not only the shape of the config."""
    return bool(info.context and info.context.get("check_environment"))


def _base_dir(info: ValidationInfo) -> Path:
    if info.context and "base_dir" in info.context:
        return Path(info.context["base_dir"])
    return Path.cwd()


def _absolute(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else _base_dir(info) / path


class Location(Strict):
    """Where a site physically is. The placement policy compares these."""

    provider: str = Field(
        min_length=1,
        description="Who runs the storage (hosting company, cloud, or your own).",
        examples=["ovh"],
    )
    region: str = Field(
        min_length=1, description="The provider's region or metro area.", examples=["eu-west"]
    )
    datacenter: str = Field(
        min_length=1,
        description="The building. Two sites in one datacenter burn together.",
        examples=["SBG2"],
    )
    country: str = Field(
        pattern=COUNTRY_PATTERN,
        description="ISO 3166-1 alpha-2 country code.",
        examples=["FR"],
    )
    lat: float | None = Field(
        default=None, ge=-90, le=90, description="Latitude in degrees, for distance rules."
    )
    lon: float | None = Field(
        default=None, ge=-180, le=180, description="Longitude in degrees, for distance rules."
    )

    @model_validator(mode="after")
    def _both_coordinates(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self


class Site(Strict):
    """One restic repository and where it physically is."""

    repository: str = Field(
        min_length=1,
        description=(
            "The restic repository, as restic accepts it: a local path, rest:, sftp:, s3:, "
            "rclone:, ... It may contain ${ENV_VAR} references (for example for REST "
            "credentials); it reaches restic through RESTIC_REPOSITORY, never the command line."
        ),
        examples=["rest:https://backup.example.net:8000/www"],
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the repository password (exactly one password_* key).",
    )
    password_command: str | None = Field(
        default=None,
        description="Command that prints the repository password (run by restic, not a shell).",
    )
    password: str | None = Field(
        default=None,
        description=(
            "The password as an ${ENV_VAR} reference only; handed to restic through a pipe. "
            "A literal password in the file is refused."
        ),
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Environment for restic's backend (AWS_ACCESS_KEY_ID, B2_ACCOUNT_KEY, ...). "
            "Values may be literal, ${ENV_VAR} or file:/path references."
        ),
    )
    location: Location = Field(description="Where the site physically is.")
    init: Literal["auto", "never"] = Field(
        default="auto",
        description=(
            "auto: create the repository the first time it is found missing (recorded in the "
            "run); never: a missing repository is an error."
        ),
    )
    limit_upload: int | None = Field(
        default=None, gt=0, description="Upload limit in KiB/s (restic --limit-upload)."
    )
    limit_download: int | None = Field(
        default=None, gt=0, description="Download limit in KiB/s (restic --limit-download)."
    )
    timeout: Duration = Field(
        default=timedelta(hours=12),
        description="Wall-clock limit for one restic run at this site; then it is stopped.",
    )
    stall_timeout: Duration = Field(
        default=timedelta(minutes=10),
        description=(
            "Stop a run that shows no progress for this long (restic can hang forever on a "
            "connection that went dead mid-transfer)."
        ),
    )
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Extended restic options, passed as -o key=value.",
        examples=[{"s3.storage-class": "STANDARD_IA"}],
    )

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _absolute(value, info)
        if _checking(info):
            if not path.is_file():
                raise ValueError(f"file {path} does not exist")
            if not os.access(path, os.R_OK):
                raise ValueError(f"file {path} is not readable")
        return path

    @field_validator("password")
    @classmethod
    def _password_reference(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        match = ENV_ONLY.match(value)
        if not match:
            raise ValueError(
                "a password is never written in the config: use password_file, "
                "password_command, or an ${ENV_VAR} reference"
            )
        if _checking(info) and missing_variables(value):
            raise ValueError(f"environment variable {match.group(1)} is not set")
        return value

    @field_validator("repository")
    @classmethod
    def _repository_variables(cls, value: str, info: ValidationInfo) -> str:
        if _checking(info):
            missing = missing_variables(value)
            if missing:
                raise ValueError(f"environment variable {', '.join(missing)} is not set")
        # A relative local repository is relative to this file, not to wherever firebreak runs.
        prefix = "local:" if value.startswith("local:") else ""
        path = value.removeprefix(prefix)
        if (prefix or not BACKEND_PREFIX.match(value)) and not path.startswith(("/", "${", "~")):
            return prefix + str(_absolute(Path(path), info))
        if path.startswith("~"):
            return prefix + str(Path(path).expanduser())
        return value

    @field_validator("env")
    @classmethod
    def _env_references(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        problems = []
        for key in value:
            if not key or "=" in key:
                problems.append(f"{key!r} is not an environment variable name")
            elif key.startswith("RESTIC_"):
                problems.append(f"{key}: RESTIC_* variables are set by firebreak itself")
        base = _base_dir(info)
        if _checking(info):
            for key, text in value.items():
                why = check_reference(text, base)
                if why:
                    problems.append(f"{key}: {why}")
        if problems:
            raise ValueError("; ".join(problems))
        # file: references are kept absolute, so they resolve the same from any directory.
        return {
            key: f"{FILE_PREFIX}{file_reference_path(text, base)}"
            if is_file_reference(text)
            else text
            for key, text in value.items()
        }

    @field_validator("options")
    @classmethod
    def _option_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if not key or "=" in key or key.startswith("-")]
        if bad:
            raise ValueError(f"not an option name: {', '.join(repr(key) for key in bad)}")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> Site:
        given = [
            name
            for name in ("password_file", "password_command", "password")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            which = " and ".join(given) if given else "none"
            raise ValueError(
                f"give exactly one of password_file, password_command, password (found {which})"
            )
        return self


class Source(Strict):
    """What is backed up, and how fresh its copies must stay."""

    paths: list[Path] = Field(
        min_length=1,
        description="Files and directories to back up (absolute, or relative to this file).",
        examples=[["/var/www", "/etc/nginx"]],
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
        description="The source is safe while at least this many sites are fresh (default: all).",
    )
    placement: SourcePlacement = Field(
        default_factory=SourcePlacement,
        description="Tighten the global placement policy for this source.",
    )
    schedule: str = Field(
        default="0 3 * * *",
        description=(
            "When the daemon runs a cycle: a five-field cron expression in the config's "
            "timezone, or 'every DURATION' (every 6h, every 30s)."
        ),
        examples=["15 2 * * *", "every 6h"],
    )

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        return [_absolute(path, info) for path in value]

    @field_validator("sites")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"site listed twice: {', '.join(repeated)}")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @property
    def parsed_schedule(self) -> Schedule:
        return parse_schedule(self.schedule)

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
        return self.min_fresh_sites if self.min_fresh_sites is not None else len(self.sites)


class Database(Strict):
    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the run history. Default: SQLite in state_dir. For fleets: "
            "postgresql+psycopg://user@host/firebreak (may contain ${ENV_VAR} references)."
        ),
        examples=["postgresql+psycopg://firebreak@db.example.net/firebreak"],
    )


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
        return None if value is None else _absolute(value, info)


class Metrics(Strict):
    listen: str = Field(
        default="127.0.0.1:9188",
        pattern=LISTEN_PATTERN,
        description="host:port the daemon serves /metrics on.",
    )


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
    max_parallel_runs: int = Field(
        default=2,
        ge=1,
        le=64,
        description="restic processes running at once, all sources together.",
    )
    metrics: Metrics = Field(default_factory=Metrics, description="The Prometheus endpoint.")
    timezone: str = Field(
        default="UTC",
        description="Time zone of cron schedules (an IANA name such as Europe/Paris).",
    )
    daemon: Daemon = Field(default_factory=Daemon, description="Scheduling and shutdown.")
    retry: Retry = Field(default_factory=Retry, description="Retries of transient failures.")
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
        return _absolute(value, info)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.state_dir / 'firebreak.db'}"

    @property
    def cache_dir(self) -> Path:
        return self.restic.cache_dir or self.state_dir / "cache"
