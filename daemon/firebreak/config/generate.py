"""The config's reference material, generated from the model so it cannot drift:

- ``config/schema.json``: JSON schema (editors validate firebreak.yaml with it);
- ``config/firebreak.example.yaml``: every key, commented, with a realistic example;
- ``docs/configuration.md``: the reference tables.

``make generate`` (``python -m firebreak.config.generate --write .``) rewrites them; a test
fails when a committed copy differs from what the model produces.
"""

from __future__ import annotations

import json
import sys
import textwrap
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from firebreak.config.dumps import MariaDB, PostgreSQL, SQLite
from firebreak.config.durations import format_duration
from firebreak.config.hooks import HookCommand, Hooks
from firebreak.config.model import (
    Config,
    Daemon,
    Database,
    Location,
    Metrics,
    MetricsTLS,
    Restic,
    Retention,
    Retry,
    Site,
    Source,
)
from firebreak.config.notify import Healthchecks, Notify, Webhook
from firebreak.config.placement import Endpoint, PlacementPolicy, SourcePlacement

SCHEMA_PATH = Path("config/schema.json")
EXAMPLE_PATH = Path("config/firebreak.example.yaml")
DOCS_PATH = Path("docs/configuration.md")

EXAMPLE: dict[str, Any] = {
    "state_dir": "/var/lib/firebreak",
    "location": {
        "provider": "scaleway",
        "region": "fr-par",
        "datacenter": "PAR-DC3",
        "country": "FR",
        "lat": 48.86,
        "lon": 2.35,
    },
    "placement": {
        "min_sites": 3,
        "distinct": ["datacenter", "provider"],
        "min_offsite": 2,
        "enforce": "error",
    },
    "sites": {
        "gra": {
            "repository": "sftp:backup@gra.example.net:/srv/restic/www",
            "password_file": "/etc/firebreak/gra.password",
            "location": {
                "provider": "ovh",
                "region": "eu-west",
                "datacenter": "GRA2",
                "country": "FR",
                "lat": 50.99,
                "lon": 2.13,
            },
            "timeout": "6h",
        },
        "fsn": {
            "repository": "rest:https://backup:${FSN_REST_PASSWORD}@fsn.example.net:8000/www",
            "password": "credential:fsn.restic-password",
            "location": {
                "provider": "hetzner",
                "region": "eu-central",
                "datacenter": "FSN1",
                "country": "DE",
                "lat": 50.48,
                "lon": 12.37,
            },
            "limit_upload": 20480,
        },
        "dub": {
            "repository": "s3:https://s3.eu-west-1.amazonaws.com/example-backups/www",
            "password_command": "/usr/local/bin/fetch-secret restic-dub",
            "env": {
                "AWS_ACCESS_KEY_ID": "file:/etc/firebreak/dub.key-id",
                "AWS_SECRET_ACCESS_KEY": "credential:dub.s3-secret",
            },
            "location": {
                "provider": "aws",
                "region": "eu-west-1",
                "datacenter": "DUB-AZ1",
                "country": "IE",
                "lat": 53.35,
                "lon": -6.26,
            },
            "init": "never",
        },
    },
    "sources": {
        "www": {
            "paths": ["/var/www", "/etc/nginx"],
            "exclude": ["*.tmp", "/var/www/cache"],
            "sites": ["gra", "fsn", "dub"],
            "max_age": "26h",
            "min_fresh_sites": 2,
            "placement": {"distinct": ["country"], "min_distance_km": 300},
            "retention": {"keep_daily": 7, "keep_weekly": 5, "keep_monthly": 12},
            "schedule": "15 2 * * *",
            "hooks": {
                "before": [["/usr/local/bin/app-maintenance", "on"]],
                "after": [["/usr/local/bin/app-maintenance", "off"]],
            },
        },
        "app-db": {
            "postgresql": {
                "databases": ["app", "billing"],
                "host": "/run/postgresql",
                "user": "firebackup",
                "scratch_database": "firebreak_drill",
            },
            "sites": ["gra", "fsn", "dub"],
            "max_age": "26h",
            "schedule": "45 2 * * *",
        },
        "ldap": {
            "command": ["slapcat", "-n", "1"],
            "stdin_filename": "ldap.ldif",
            "sites": ["gra", "fsn", "dub"],
        },
    },
}

_MODELS: tuple[type[BaseModel], ...] = (
    Config,
    Site,
    Location,
    Source,
    Retention,
    Healthchecks,
    Hooks,
    HookCommand,
    PostgreSQL,
    MariaDB,
    SQLite,
    PlacementPolicy,
    SourcePlacement,
    Endpoint,
    Database,
    Restic,
    Metrics,
    MetricsTLS,
    Daemon,
    Retry,
    Notify,
    Webhook,
)


def json_schema() -> str:
    schema = Config.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "firebreak configuration"
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def example_yaml() -> str:
    lines = [
        "# firebreak.yaml — an example with every key. Generated from the config model by",
        "# `make generate`; do not edit by hand. Keys shown commented out are optional and",
        "# show their default. Relative paths are relative to this file's directory.",
        "",
    ]
    _render_model(Config, EXAMPLE, 0, lines, show_defaults=True)
    return "\n".join(lines).rstrip() + "\n"


def _render_model(
    model: type[BaseModel],
    data: dict[str, Any],
    indent: int,
    lines: list[str],
    *,
    show_defaults: bool,
) -> None:
    pad = " " * indent
    for name, field in model.model_fields.items():
        present = name in data
        if not present and not show_defaults:
            continue
        if show_defaults and field.description:
            lines += [f"{pad}# {line}" for line in textwrap.wrap(field.description, 96 - indent)]
        target = _entry_model(field.annotation)
        if present and isinstance(data[name], dict) and target is not None:
            lines.append(f"{pad}{name}:")
            if _is_model(field.annotation):
                _render_model(target, data[name], indent + 2, lines, show_defaults=show_defaults)
            else:
                for position, (key, entry) in enumerate(data[name].items()):
                    lines.append(f"{pad}  {key}:")
                    _render_model(
                        target,
                        entry,
                        indent + 4,
                        lines,
                        show_defaults=show_defaults and position == 0,
                    )
        elif present:
            lines += _entry(name, data[name], pad)
        elif target is not None and _is_model(field.annotation):
            lines.append(f"{pad}# {name}:")
            for sub_name, sub_field in target.model_fields.items():
                lines += [f"{pad}#   {line}" for line in _entry(sub_name, _default(sub_field), "")]
        else:
            lines += [f"{pad}# {line}" for line in _entry(name, _default(field), "")]
        if show_defaults and indent == 0:
            lines.append("")


def _entry(name: str, value: Any, pad: str) -> list[str]:
    """``name: value`` — lists inline, mappings as a block, None as an empty value."""
    if value is None:
        return [f"{pad}{name}:"]
    if isinstance(value, dict) and value:
        return [f"{pad}{name}:", *(f"{pad}  {key}: {_inline(item)}" for key, item in value.items())]
    return [f"{pad}{name}: {_inline(value)}"]


def _inline(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return None
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            annotation = args[0]
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    annotation = _strip_optional(annotation)
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _entry_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested mapping: the field's own model, or the values of dict[str, Model]."""
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is dict:
        value = _strip_optional(typing.get_args(annotation)[1])
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
    return None


def _type_name(annotation: Any) -> str:
    annotation = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        value = typing.get_args(annotation)[1]
        model = _entry_model(annotation)
        return (
            f"name → [{model.__name__.lower()}](#{model.__name__.lower()})"
            if model
            else (f"mapping of {_type_name(value)}")
        )
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__.lower()}](#{annotation.__name__.lower()})"
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        timedelta: "duration",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def reference_markdown() -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from daemon/firebreak/config/model.py by `make generate`; do not edit. -->",
        "",
        "firebreak reads one YAML file (default `/etc/firebreak/firebreak.yaml`, or `-c FILE`, or",
        "`$FIREBREAK_CONFIG`). `firebreak validate` checks it and reports every problem at once,",
        "each with the file, line and key path. Unknown keys are errors, not ignored.",
        "",
        "- Durations are written as a number and a unit: `90s`, `30m`, `26h`, `7d`, `1w`, `1d12h`.",
        "- Relative paths are relative to the config file's directory.",
        "- `${ENV_VAR}` references are allowed in `sites.*.repository`, `sites.*.password`,",
        "  `sites.*.env` values and `database.url`; `file:/path` references in `sites.*.env`",
        "  values; `credential:NAME` references (a systemd credential, `LoadCredential=NAME`:",
        "  docs/install.md) in `sites.*.password` and `sites.*.env` values. They are resolved",
        "  when restic starts, and never printed.",
        "- A JSON schema for editors is in `config/schema.json`; a commented example with",
        "  every key in `config/firebreak.example.yaml`.",
        "",
    ]
    for model in _MODELS:
        title = "Top level" if model is Config else model.__name__.lower()
        out += [f"## {title}", ""]
        doc = (model.__doc__ or "").strip().splitlines()
        if doc:
            out += [doc[0], ""]
        out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            default = _default(field)
            if field.is_required():
                shown = "**required**"
            elif default in (None, [], {}):
                shown = "–"
            else:
                shown = f"`{json.dumps(default) if not isinstance(default, str) else default}`"
            description = (field.description or "").replace("|", "\\|")
            out.append(f"| `{name}` | {_type_name(field.annotation)} | {shown} | {description} |")
        out.append("")
    out += ["## Example", "", "```yaml", example_yaml().rstrip(), "```", ""]
    return "\n".join(out)


def generated_files() -> dict[Path, str]:
    return {
        SCHEMA_PATH: json_schema(),
        EXAMPLE_PATH: example_yaml(),
        DOCS_PATH: reference_markdown(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--write":
        print("usage: python -m firebreak.config.generate --write REPO_ROOT", file=sys.stderr)
        return 2
    root = Path(argv[1])
    for relative, content in generated_files().items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content, encoding="utf-8")
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
