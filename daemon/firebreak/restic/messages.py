"""Typed views of restic's --json output (fields that 0.14 through current all print)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from firebreak.restic.result import ResticResult, decoded

log = logging.getLogger(__name__)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_M = TypeVar("_M", bound=_Message)


class BackupSummary(_Message):
    snapshot_id: str | None = None
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    data_added: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    total_duration: float = 0.0


class Snapshot(_Message):
    id: str
    short_id: str | None = None
    time: datetime
    hostname: str = ""
    paths: list[str] = []
    tags: list[str] | None = None

    @property
    def short(self) -> str:
        return self.short_id or self.id[:8]


def backup_summary(result: ResticResult) -> BackupSummary | None:
    """The summary restic prints at the end of a backup, or None when there is none."""
    return _summary(result, BackupSummary)


def _summary(result: ResticResult, model: type[_M]) -> _M | None:
    summaries = result.messages_of("summary")
    if not summaries:
        return None
    try:
        return model.model_validate(summaries[-1])
    except ValidationError:
        return None


class CheckSummary(_Message):
    """What ``restic check --json`` prints at its end, from restic 0.18 (older ones print
    text only)."""

    num_errors: int = 0
    broken_packs: list[str] | None = None


def check_summary(result: ResticResult) -> CheckSummary | None:
    return _summary(result, CheckSummary)


def snapshot_list(result: ResticResult) -> list[Snapshot]:
    """``restic snapshots --json`` prints one JSON array. An entry that is no snapshot (no
    id, no time) is left out, and said so in the log."""
    listed = [item for message in result.messages if isinstance(message, list) for item in message]
    snapshots = [snapshot for snapshot in map(_snapshot, listed) if snapshot is not None]
    if len(snapshots) < len(listed):
        log.warning("restic listed %d entries that are no snapshot", len(listed) - len(snapshots))
    return sorted(snapshots, key=lambda snapshot: snapshot.time)


def _snapshot(item: object) -> Snapshot | None:
    try:
        return Snapshot.model_validate(item)
    except ValidationError:
        return None


@dataclass(frozen=True)
class ForgetDecision:
    """One snapshot of a ``restic forget --json``: kept (and by which rules) or removed."""

    snapshot: Snapshot
    keep: bool
    reasons: tuple[str, ...] = ()


def forget_decisions(result: ResticResult) -> list[ForgetDecision]:
    """What ``restic forget --json`` kept and removed, newest first. (restic 0.14 gives a
    reason's snapshot without its id: it is matched by time.)"""
    decisions = []
    for message in result.messages:
        for group in message if isinstance(message, list) else []:
            if not isinstance(group, dict):
                continue
            why = {
                str(_field(reason.get("snapshot"), "time")): _words(reason.get("matches"))
                for reason in _items(group.get("reasons"))
                if isinstance(reason, dict)
            }
            for keep, key in ((True, "keep"), (False, "remove")):
                for item in _items(group.get(key)):
                    snapshot = _snapshot(item)
                    if snapshot is None:
                        continue
                    reasons = why.get(str(_field(item, "time")), ()) if keep else ()
                    decisions.append(ForgetDecision(snapshot, keep, reasons))
    return sorted(decisions, key=lambda decision: decision.snapshot.time, reverse=True)


def _items(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _field(value: object, name: str) -> object:
    return value.get(name) if isinstance(value, dict) else None


def _words(value: object) -> tuple[str, ...]:
    return tuple(str(word) for word in _items(value))


# Every restic skips a top-level source path that does not exist and says so on stderr; 0.14
# through 0.18 then exit 0 as if nothing were missing (0.19 exits 3).
_SKIPPED = re.compile(r"^(.+) does not exist, skipping$")


def skipped_paths(result: ResticResult) -> list[str]:
    """The source paths restic skipped because they do not exist."""
    found = (_SKIPPED.match(line) for line in result.stderr_tail)
    return list(dict.fromkeys(match.group(1) for match in found if match is not None))


def unreadable_items(result: ResticResult, limit: int = 3) -> str:
    """``/a, /b and 2 more`` from a partial backup's error lines."""
    # restic may report one item twice (stat, then open): each is named once.
    items = list(
        dict.fromkeys(
            str(m.get("item", "?"))
            for m in result.error_messages
            if m.get("message_type") == "error"
        )
    )
    return _few(items, limit)


def partial_backup_problem(result: ResticResult, limit: int = 3) -> str:
    """What a snapshot that was written lacks: source paths that do not exist, files that
    could not be read."""
    problems = []
    missing = skipped_paths(result)
    if len(missing) == 1:
        problems.append(f"source path {missing[0]} does not exist (it is not in the snapshot)")
    elif missing:
        problems.append(
            f"source paths {_few(missing, limit)} do not exist (they are not in the snapshot)"
        )
    unreadable = unreadable_items(result, limit)
    if unreadable or not missing:
        problems.append(
            f"some files could not be read: {unreadable}"
            if unreadable
            else "some files could not be read"
        )
    return f"snapshot written, but {'; '.join(problems)}"


def _few(items: list[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{shown}{more}"


def listed_file(message: object) -> tuple[str, int] | None:
    """(path, size) when a line of ``restic ls --json`` is a regular file, else None (the
    snapshot line, directories, links)."""
    if not isinstance(message, dict) or message.get("type") != "file" or "path" not in message:
        return None
    size = message.get("size")
    return str(message["path"]), size if isinstance(size, int) and size > 0 else 0


def repository_id(result: ResticResult) -> str | None:
    """The id ``restic cat config`` printed (as indented JSON: one value over several lines)."""
    config_json = decoded("\n".join(result.stdout_lines))
    if isinstance(config_json, dict) and isinstance(config_json.get("id"), str):
        return str(config_json["id"])
    for message in result.messages:
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            return str(message["id"])
    return None
