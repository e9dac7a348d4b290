"""The base of every config model: unknown keys are errors, values are immutable."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)

from firebreak.config.durations import DURATION_PATTERN, format_duration, parse_duration
from firebreak.config.fingerprint import DEFAULT_STATE_DIR as DEFAULT_STATE_DIR
from firebreak.config.references import file_problem


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Shared by the config's models: names, durations, and how paths and checks depend on
# where the file is and what the caller asked for.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
LISTEN_PATTERN = r"^\[?[0-9A-Za-z.:-]*\]?:\d{1,5}$"
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"
# A bcrypt hash as htpasswd -B writes it: variant, cost, then 53 characters of salt and hash.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
# restic backends are written "name:..." (rest:, sftp:, s3:, rclone:, b2:, local: ...).
BACKEND_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]*:")


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


def checking(info: ValidationInfo) -> bool:
    """True when the caller asked to check files and environment variables (``validate``,
    the start of a backup), not only the shape of the config."""
    return bool(info.context and info.context.get("check_environment"))


def base_dir(info: ValidationInfo) -> Path:
    if info.context and "base_dir" in info.context:
        return Path(info.context["base_dir"])
    return Path.cwd()


def absolute(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base_dir(info) / path


def readable_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """A file the config names, made absolute (relative to the config file) and, when the
    config is checked, readable."""
    if value is None:
        return None
    path = absolute(value, info)
    why = file_problem(path) if checking(info) else None
    if why:
        raise ValueError(why)
    return path
