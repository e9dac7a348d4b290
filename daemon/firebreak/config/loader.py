"""Reading firebreak.yaml: YAML → pydantic model, with every problem reported at once.

Each problem is addressed by file, line and the dotted path of the field, the way a sysadmin
would look for it: ``firebreak.yaml:12: sites.fra.password_file: file /x does not exist``.
"""

from __future__ import annotations

import difflib
import functools
import json
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from firebreak.config.base import COUNTRY_PATTERN, LISTEN_PATTERN, NAME_PATTERN, Strict
from firebreak.config.fingerprint import fingerprint
from firebreak.config.model import Config

Loc = tuple[str | int, ...]

PATTERN_MESSAGES = {
    NAME_PATTERN: (
        "use letters, digits, '.', '_' and '-' only (at most 63), starting with a letter or digit"
    ),
    LISTEN_PATTERN: "write it as host:port, such as 127.0.0.1:9188 or [::1]:9188",
    COUNTRY_PATTERN: "use the two-letter ISO 3166-1 code, such as FR or DE",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config, addressed by the path of the field."""

    loc: Loc
    message: str
    line: int | None = None

    @property
    def path(self) -> str:
        return format_loc(self.loc)


class ConfigError(Exception):
    """The config cannot be used; carries every problem found, not only the first."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(render_problem(self.file, problem) for problem in self.problems)


def render_problem(file: str, problem: Problem) -> str:
    """One line: the message's characters that do not print (a newline in a key the user
    wrote) are escaped, so each problem stays one line and no listing can be forged."""
    where = f"{file}:{problem.line}" if problem.line else file
    message = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in problem.message)
    return f"{where}: {problem.path}: {message}" if problem.loc else f"{where}: {message}"


def format_loc(loc: Loc) -> str:
    """sites.gra.location.country, sources.www.paths[0]; an empty key, or one with a newline
    or another character that does not print, in quotes: sources["www\\n"]."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.isprintable() or not part:
            text += f"[{json.dumps(part)}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def load_config(path: Path | str, *, check_environment: bool = False) -> Config:
    """Read and validate a config file.

    With ``check_environment`` the files and environment variables it refers to must exist
    too (``firebreak validate`` and every command that runs restic ask for this).
    """
    file = Path(path)
    display = str(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(display, [Problem((), "file does not exist")]) from None
    except IsADirectoryError:
        raise ConfigError(display, [Problem((), "is a directory, not a file")]) from None
    except OSError as exc:
        raise ConfigError(display, [Problem((), f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start : exc.start + 1].hex()
        problem = f"not UTF-8 text (byte 0x{byte}): save the file as UTF-8"
        raise ConfigError(display, [Problem((), problem, line)]) from None
    config = parse_config(
        text, display, base_dir=file.resolve().parent, check_environment=check_environment
    )
    config._fingerprint = fingerprint(file, raw)
    return config


def parse_config(
    text: str, display: str, *, base_dir: Path, check_environment: bool = False
) -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(display, [_yaml_problem(exc, text)]) from None
    if root is None or data is None:
        raise ConfigError(display, [Problem((), "the file is empty")])
    if not isinstance(data, dict):
        raise ConfigError(display, [Problem((), "the top level must be a mapping of keys")])

    problems = list(_duplicate_keys(root, ()))
    problems += _unknown_site_references(data)
    config: Config | None = None
    try:
        config = Config.model_validate(
            data, context={"base_dir": base_dir, "check_environment": check_environment}
        )
    except ValidationError as exc:
        problems += _from_pydantic(exc, data)
    if config is not None:
        problems += _loosened_placement(config)
    if problems:
        located = [Problem(p.loc, p.message, p.line or _line_of(root, p.loc)) for p in problems]
        located.sort(key=lambda p: (p.line or 0, p.path))
        raise ConfigError(display, located)
    assert config is not None
    return config


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    """Where the YAML goes wrong, at the line a person must look at."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        what = (
            "a NUL byte" if exc.character == 0 else f"the control character #x{exc.character:04x}"
        )
        return Problem((), f"contains {what}, which YAML does not allow", line)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem((), f"not valid YAML: {exc}")
    problem, context = exc.problem or "", exc.context or ""
    at = exc.problem_mark.line + 1 if exc.problem_mark else None
    since = exc.context_mark.line + 1 if exc.context_mark else None
    opened = _OPENED.get(context, context.removeprefix("while parsing ").removeprefix("while "))
    if "'\\t'" in problem:
        return Problem((), "not valid YAML: a tab character; YAML indents with spaces only", at)
    if since is not None and (at is None or "end of stream" in problem):
        # Something opened there is never closed (a quote, a bracket): point at the opening.
        return Problem((), f"not valid YAML: {opened} opened here is never closed", since)
    if since is not None and since != at and context:
        return Problem((), f"not valid YAML: {problem} (in {opened} from line {since})", at)
    return Problem((), f"not valid YAML: {problem}", at)


# What PyYAML's contexts are, in the words of someone editing the file.
_OPENED = {
    "while scanning a quoted scalar": "a quoted value",
    "while parsing a flow sequence": "a [ list",
    "while parsing a flow mapping": "a { mapping",
    "while parsing a block mapping": "the mapping",
    "while parsing a block collection": "the list",
}


def _from_pydantic(error: ValidationError, data: object) -> Iterable[Problem]:
    found: dict[Loc, list[tuple[str, str]]] = {}
    for item in error.errors(include_url=False):
        loc = _yaml_path(item["loc"], data)
        kind = item["type"]
        message = item["msg"]
        if kind == "missing":
            message = "required"
        elif kind == "extra_forbidden":
            message = "unknown key" + _suggestion(loc)
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        elif kind == "string_pattern_mismatch":
            pattern = (item.get("ctx") or {}).get("pattern")
            message = PATTERN_MESSAGES.get(str(pattern), message)
        if "[key]" in item["loc"]:
            message = f"name {loc[-1]!r}: {message}"
        found.setdefault(loc, []).append((kind, message))
    for loc, messages in found.items():
        # Of a value's forms, the ones it is not even shaped like say least: drop them when
        # another form has something to say.
        telling = [m for kind, m in messages if kind not in _WRONG_SHAPE] or [
            m for _, m in messages
        ]
        for message in dict.fromkeys(telling):
            yield Problem(loc, message)


# Errors that only say the value is not of this form (a list where a mapping was, ...).
_WRONG_SHAPE = frozenset(
    {"list_type", "dict_type", "model_type", "model_attributes_type"}
    | {"string_type", "literal_error"}
)


def _yaml_path(loc: Loc, data: object) -> Loc:
    """pydantic's location as a path through the YAML. A value that may take several forms
    (a list or a mapping) fails in each of them, and pydantic names the form in the location,
    which means nothing in the YAML: such a part is dropped, unless the YAML has a key of
    that name there (a source may be called anything)."""
    path: list[str | int] = []
    at: object = data
    for part in loc:
        found, inside = _inside(at, part)
        if not found and (part == "[key]" or _is_form(part)):
            continue
        at = inside
        path.append(part)
    return tuple(path)


def _inside(value: object, part: str | int) -> tuple[bool, object]:
    """Whether the YAML value has this key (or index), and what it holds there."""
    if isinstance(value, dict) and part in value:
        return True, value[part]
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return True, value[part]
    return False, None


def _is_form(part: str | int) -> bool:
    """A location part that names one form of a value (list[str], function-after[...],
    constrained-str, one of the config's model classes) rather than a key."""
    if not isinstance(part, str):
        return False
    return "[" in part or part == "constrained-str" or part in _model_names()


@functools.cache
def _model_names() -> frozenset[str]:
    names: set[str] = set()
    todo: list[type[BaseModel]] = [Strict]
    while todo:
        model = todo.pop()
        names.add(model.__name__)
        todo.extend(model.__subclasses__())
    return frozenset(names)


def _suggestion(loc: Loc) -> str:
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at loc (used to suggest a key)."""
    current: Any = Config
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin is dict and len(args) == 2:
            current = args[1]
        elif origin is list and args:
            current = args[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if not models:
                return None
            current = models[0]
        else:
            return None
        current = _unwrap(current)
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _unknown_site_references(data: dict[str, Any]) -> list[Problem]:
    sites = data.get("sites")
    sources = data.get("sources")
    if not isinstance(sites, dict) or not isinstance(sources, dict):
        return []
    known = ", ".join(str(name) for name in sites) or "none"
    problems = []
    for source_name, source in sources.items():
        listed = source.get("sites") if isinstance(source, dict) else None
        if not isinstance(listed, list):
            continue
        for index, site_name in enumerate(listed):
            if isinstance(site_name, str) and site_name not in sites:
                problems.append(
                    Problem(
                        ("sources", source_name, "sites", index),
                        f"unknown site {site_name!r} (sites defined: {known})",
                    )
                )
    return problems


def _loosened_placement(config: Config) -> list[Problem]:
    """A source may tighten the global placement policy, never loosen it."""
    policy = config.placement
    problems = []
    for name, source in config.sources.items():
        mine = source.placement
        loc = ("sources", name, "placement")
        if mine.min_sites is not None and mine.min_sites < policy.min_sites:
            problems.append(
                Problem(
                    (*loc, "min_sites"),
                    f"{mine.min_sites} is looser than placement.min_sites {policy.min_sites}; "
                    "a source may only tighten the global policy",
                )
            )
        if (
            mine.min_distance_km is not None
            and policy.min_distance_km is not None
            and mine.min_distance_km < policy.min_distance_km
        ):
            problems.append(
                Problem(
                    (*loc, "min_distance_km"),
                    f"{mine.min_distance_km:g} is looser than placement.min_distance_km "
                    f"{policy.min_distance_km:g}; a source may only tighten the global policy",
                )
            )
        if mine.min_offsite is not None and mine.min_offsite < policy.min_offsite:
            problems.append(
                Problem(
                    (*loc, "min_offsite"),
                    f"{mine.min_offsite} is looser than placement.min_offsite "
                    f"{policy.min_offsite}; a source may only tighten the global policy",
                )
            )
        if mine.enforce == "warn" and policy.enforce == "error":
            problems.append(
                Problem(
                    (*loc, "enforce"),
                    "warn is looser than placement.enforce error; "
                    "a source may only tighten the global policy",
                )
            )
    return problems


def _duplicate_keys(node: yaml.Node, loc: Loc) -> Iterable[Problem]:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                yield Problem(
                    (*loc, key),
                    f"defined twice (lines {seen[key]} and {line}); the first would be lost",
                    line,
                )
            seen.setdefault(key, line)
            yield from _duplicate_keys(value_node, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def _line_of(root: yaml.Node, loc: Loc) -> int | None:
    """The line (1-based) of the deepest node on loc that exists in the YAML."""
    node = root
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # The last of repeated keys is the one YAML keeps, so it is the one validated.
            matches = [pair for pair in node.value if str(pair[0].value) == str(part)]
            if not matches:
                return line
            key_node, node = matches[-1]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
