"""What one restic process left behind: exit code, JSON messages, the tail of stderr."""

from __future__ import annotations

import enum
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from firebreak.restic.progress import RETRYING

STDERR_TAIL_LINES = 40
MAX_MESSAGES = 10_000
MESSAGE_LIMIT = 500


class StopReason(enum.Enum):
    """Why firebreak stopped the process before it ended by itself."""

    NONE = "none"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    CANCELLED = "cancelled"
    # restic kept retrying something the site refuses for good (see runner.run's give_up).
    GAVE_UP = "gave up"
    # restic kept retrying to open the repository at a site that cannot be reached or
    # answers with server errors (0.18 and later would go on for 15 minutes; 0.14 gives up at
    # once).
    OPEN_IN_VAIN = "retrying to open the repository"


@dataclass
class ResticResult:
    argv: tuple[str, ...]
    # The restic command that ran (backup, forget, ...).
    command: str = ""
    exit_code: int = -1
    duration_seconds: float = 0.0
    stop_reason: StopReason = StopReason.NONE
    limit_seconds: float = 0.0
    # JSON values restic printed on stdout, except progress ("status") lines.
    messages: list[Any] = field(default_factory=list)
    # Lines of stdout that were not JSON (restic 0.14 prints some text even with --json).
    stdout_lines: list[str] = field(default_factory=list)
    # The last lines of stderr, secrets already masked.
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    # Structured error lines from stderr (message_type error / exit_error).
    error_messages: list[dict[str, Any]] = field(default_factory=list)
    exit_error_code: int | None = None
    last_status: dict[str, Any] | None = None
    # firebreak stopped restic before it printed anything (its answer to being stopped, such
    # as "signal interrupt received, cleaning up", comes after).
    silent_when_stopped: bool = False
    # What restic had said on stderr when firebreak stopped it (what it says while it cleans
    # up after the stop, such as retrying to delete its lock, comes after).
    said_when_stopped: tuple[str, ...] = ()

    @property
    def retrying_when_stopped(self) -> str | None:
        """The last line of restic retrying something before it was stopped."""
        return next(
            (line for line in reversed(self.said_when_stopped) if RETRYING.search(line)), None
        )

    def messages_of(self, message_type: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if isinstance(m, dict) and m.get("message_type") == message_type
        ]

    def said_nothing(self) -> bool:
        """Whether restic printed nothing yet, on either stream."""
        return not (self.messages or self.stdout_lines or self.stderr_tail or self.last_status)

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_tail)

    def stderr_lines(self) -> list[str]:
        """stderr's tail as a person reads it: restic 0.18 and later print their errors as
        JSON lines there (``{"message_type":"error","message":"..."}``), each stands for
        the lines of its message."""
        lines: list[str] = []
        for line in self.stderr_tail:
            value = _json_object(line)
            message = value.get("message") if value is not None else None
            if isinstance(message, str):
                lines.extend(part for part in message.splitlines() if part.strip())
            else:
                lines.append(line)
        return lines

    def error_message(self) -> str:
        """One short line for a person: restic's own fatal message when it gave one."""
        candidates = [
            m["message"].strip().removeprefix("Fatal: ")
            for m in self.error_messages
            if isinstance(m.get("message"), str) and m["message"].strip()
        ]
        for line in self.stderr_tail:
            if line.startswith("Fatal: "):
                candidates.append(line.removeprefix("Fatal: "))
        if not candidates:
            candidates = [
                line for line in self.stderr_tail if line.strip() and not line.startswith("{")
            ]
        text = candidates[0] if candidates else f"restic exited with code {self.exit_code}"
        first = self._first_error() if _COUNTED.match(text) else None
        if first is not None:
            text = f"{text}; the first: {first}"
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"

    def _first_error(self) -> str | None:
        """restic's first error about one item ("There were 3 errors" says only how many),
        why first: what it was doing has the long path, and a message is cut at its end."""
        said = None
        for message in self.error_messages:
            inner = message.get("error")
            if isinstance(inner, dict) and isinstance(inner.get("message"), str):
                said = inner["message"]
                break
        else:
            for line in self.stderr_tail:
                if line.startswith(_IGNORED):
                    said = line.removeprefix(_IGNORED).partition(": ")[2]
                    break
        if not said:
            return None
        doing, _, why = said.rpartition(": ")
        return f"{why} ({doing})" if doing else why


# restic restore's last words after errors about single files (each on a line before).
_COUNTED = re.compile(r"There were \d+ errors$")
_IGNORED = "ignoring error for "


def decoded(text: str) -> Any:
    """The JSON value text holds, or None: not JSON, or nested deeper than Python recurses
    (restic never prints that; garbage may)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_object(line: str) -> dict[str, Any] | None:
    value = decoded(line) if line.startswith("{") else None
    return value if isinstance(value, dict) else None
