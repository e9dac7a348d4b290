"""Typed views of restic's --json output (fields that 0.14 through current all print)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from firebreak.restic.result import ResticResult


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


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
    summaries = result.messages_of("summary")
    if not summaries:
        return None
    try:
        return BackupSummary.model_validate(summaries[-1])
    except ValidationError:
        return None


def snapshot_list(result: ResticResult) -> list[Snapshot]:
    """``restic snapshots --json`` prints one JSON array."""
    listed: list[Any] = []
    for message in result.messages:
        if isinstance(message, list):
            listed.extend(message)
    return sorted(
        (Snapshot.model_validate(item) for item in listed if isinstance(item, dict)),
        key=lambda snapshot: snapshot.time,
    )


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
                str((reason.get("snapshot") or {}).get("time")): tuple(reason.get("matches") or ())
                for reason in group.get("reasons") or ()
                if isinstance(reason, dict)
            }
            for keep, key in ((True, "keep"), (False, "remove")):
                for item in group.get(key) or ():
                    try:
                        snapshot = Snapshot.model_validate(item)
                    except ValidationError:
                        continue
                    reasons = why.get(str(item.get("time")), ()) if keep else ()
                    decisions.append(ForgetDecision(snapshot, keep, reasons))
    return sorted(decisions, key=lambda decision: decision.snapshot.time, reverse=True)


def unreadable_items(result: ResticResult, limit: int = 3) -> str:
    """``/a (permission denied), /b ...`` from a partial backup's error lines."""
    # restic may report one item twice (stat, then open): each is named once.
    items = list(
        dict.fromkeys(
            str(m.get("item", "?"))
            for m in result.error_messages
            if m.get("message_type") == "error"
        )
    )
    if not items:
        return ""
    shown = ", ".join(items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{shown}{more}"


def listed_file(message: object) -> tuple[str, int] | None:
    """(path, size) when a line of ``restic ls --json`` is a regular file, else None (the
    snapshot line, directories, links)."""
    if not isinstance(message, dict) or message.get("type") != "file" or "path" not in message:
        return None
    return str(message["path"]), int(message.get("size") or 0)


def repository_id(result: ResticResult) -> str | None:
    """The id ``restic cat config`` printed (as indented JSON: one value over several lines)."""
    try:
        config_json = json.loads("\n".join(result.stdout_lines))
    except ValueError:
        config_json = None
    if isinstance(config_json, dict) and isinstance(config_json.get("id"), str):
        return str(config_json["id"])
    for message in result.messages:
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            return str(message["id"])
    return None
