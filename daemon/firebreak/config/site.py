"""A site: one restic repository, where it physically is, and how to reach it."""

from __future__ import annotations

import os
import shlex
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from firebreak.config.base import (
    BACKEND_PREFIX,
    COUNTRY_PATTERN,
    Duration,
    Strict,
    absolute,
    base_dir,
    checking,
    readable_file,
)
from firebreak.config.references import (
    ENV_ONLY,
    FILE_PREFIX,
    SecretReaders,
    check_reference,
    file_reference_path,
    is_credential_reference,
    is_file_reference,
    missing_variables,
    permission_problem,
)
from firebreak.config.schedules import ScheduleText


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
            "The password as an ${ENV_VAR} or credential:NAME reference (a systemd "
            "credential, LoadCredential=NAME); handed to restic through a pipe. A literal "
            "password in the file is refused."
        ),
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Environment for restic's backend (AWS_ACCESS_KEY_ID, B2_ACCOUNT_KEY, ...). "
            "Values may be literal, ${ENV_VAR}, file:/path or credential:NAME (a systemd "
            "credential) references."
        ),
    )
    secret_file_readers: SecretReaders = Field(
        default="owner",
        description=(
            "Who besides its owner may read this site's password_file and file: credentials. "
            "owner (the default, as ssh wants keys): nobody; group: the file's group too (a "
            "root:firebreak 0640 layout); unchecked: do not look (a filesystem that shows "
            "every file as readable). A more open file is a config error."
        ),
    )
    location: Location = Field(description="Where the site physically is.")
    init: Literal["auto", "never"] = Field(
        default="auto",
        description=(
            "auto: create the repository at a site that never had one (recorded as a run of "
            "its own); never: a missing repository is an error. A site that held backups and "
            "has no repository now is LOST, whatever this says: nothing is created there until "
            "firebreak site reset records the operator's decision."
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
            "connection that went dead mid-transfer). Progress is restic's output or its "
            "reads and writes, so silent commands (check, prune, restore) are watched too."
        ),
    )
    lock_wait: Duration | None = Field(
        default=timedelta(minutes=2),
        description=(
            "How long restic waits for another restic's lock on the repository before it "
            "fails (--retry-lock, restic 0.16 and later; at most half the stall_timeout). "
            "Older restic fails at once, and the daemon retries later. null: never wait."
        ),
    )
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Extended restic options, passed as -o key=value.",
        examples=[{"s3.storage-class": "STANDARD_IA"}],
    )
    append_only: bool = Field(
        default=False,
        description=(
            "The site refuses deletion (rest-server --append-only, a bucket policy denying "
            "deletes; object lock alone is not enough for restic): retention "
            "skips it, with the reason recorded, instead of failing. An undeclared site that "
            "refuses a delete is found out and skipped too, at the cost of asking."
        ),
    )
    immutability_schedule: ScheduleText | None = Field(
        default="30 4 * * 0",
        description=(
            "When the daemon proves that an append_only site refuses deletes: it writes a "
            "tiny canary snapshot there and tries to forget it (crontab(5), 'every DURATION', "
            "or null; the default is Sundays at 04:30). Only sites with append_only: true; a "
            "site that accepts the delete is a violation (FirebreakSiteNotImmutable)."
        ),
    )
    check_schedule: ScheduleText | None = Field(
        default="0 5 * * 0",
        description=(
            "When the daemon runs restic check here (crontab(5), 'every DURATION', or null; "
            "the default is Sundays at 05:00)."
        ),
    )
    drill_schedule: ScheduleText | None = Field(
        default="0 6 * * *",
        description=(
            "When the daemon runs a restore drill here (crontab(5), 'every DURATION', or null)."
        ),
    )
    drill_files: int = Field(
        default=20, ge=1, le=10_000, description="Files a drill restores, picked at random."
    )
    drill_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="A drill's sample stops growing at this many bytes.",
    )
    check_read_data_subsets: int = Field(
        default=12,
        ge=1,
        le=256,  # restic refuses more (--read-data-subset n/t: t must be at most 256)
        description=(
            "restic check reads 1/N of the pack data each time, a different part each time "
            "(n/N rotating), so every pack is read at least once every N checks."
        ),
    )

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return readable_file(value, info)

    @field_validator("password")
    @classmethod
    def _password_reference(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if is_credential_reference(value):
            why = check_reference(value, Path("/")) if checking(info) else None
            if why:
                raise ValueError(why)
            return value
        match = ENV_ONLY.match(value)
        if not match:
            raise ValueError(
                "a password is never written in the config: use password_file, "
                "password_command, an ${ENV_VAR} or a credential:NAME reference"
            )
        if checking(info) and missing_variables(value):
            raise ValueError(f"environment variable {match.group(1)} is not set")
        return value

    @field_validator("repository")
    @classmethod
    def _repository_variables(cls, value: str, info: ValidationInfo) -> str:
        if checking(info):
            missing = missing_variables(value)
            if missing:
                raise ValueError(f"environment variable {', '.join(missing)} is not set")
        # A relative local repository is relative to this file, not to wherever firebreak runs.
        prefix = "local:" if value.startswith("local:") else ""
        path = value.removeprefix(prefix)
        if (prefix or not BACKEND_PREFIX.match(value)) and not path.startswith(("/", "${", "~")):
            return prefix + str(absolute(Path(path), info))
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
        base = base_dir(info)
        if checking(info):
            for key, text in value.items():
                why = check_reference(text, base)
                if why:
                    problems.append(f"{key}: {why}")
        if problems:
            raise ValueError("; ".join(problems))
        # file: references are kept absolute, so they resolve the same from any directory
        # (credential: ones are found when used: systemd's directory, or a credential store).
        return {
            key: f"{FILE_PREFIX}{file_reference_path(text, base)}"
            if is_file_reference(text) and not is_credential_reference(text)
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

    @field_validator("password_command")
    @classmethod
    def _password_program(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not checking(info):
            return value
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into words: {exc}") from None
        if not words:
            raise ValueError("is empty")
        # The command is never echoed: a password pasted there by mistake must not reach a
        # terminal or the journal.
        program = words[0]
        if os.sep not in program:
            if shutil.which(program) is None:
                raise ValueError("its program (the first word) is not found on PATH")
        elif not Path(program).is_file():
            raise ValueError("its program (the first word) does not exist")
        elif not os.access(program, os.X_OK):
            raise ValueError("its program (the first word) is not executable")
        return value

    @model_validator(mode="after")
    def _secret_files_closed(self, info: ValidationInfo) -> Site:
        if not checking(info):
            return self
        files = [("password_file", self.password_file)] if self.password_file else []
        files += [
            (f"env.{key}", file_reference_path(text, Path("/")))
            for key, text in self.env.items()
            if is_file_reference(text) and not is_credential_reference(text)
        ]
        problems = [
            f"{key}: {why}"
            for key, path in files
            if (why := permission_problem(path, self.secret_file_readers))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

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
