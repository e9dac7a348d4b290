"""What time it is: the one clock every recorded time comes from, always UTC-aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


class Deadline:
    """The soonest time after a judgment's moment at which one of the comparisons it made
    with that moment (``within``) turns: until then, with the same history, every judgment
    made at that moment holds (the fleet exporter serves a host's metrics from its cache
    until the host's runs move or this passes)."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def note(self, moment: datetime) -> None:
        if self.at is None or moment < self.at:
            self.at = moment


def within(
    now: datetime,
    since: datetime,
    seconds: float,
    *,
    inclusive: bool = False,
    deadline: Deadline | None = None,
) -> bool:
    """Whether less than ``seconds`` (inclusive: at most) passed from since to now; a
    deadline notes the first moment that stops being so."""
    age = (now - since).total_seconds()
    holds = age <= seconds if inclusive else age < seconds
    if deadline is not None and holds:
        end = since + timedelta(seconds=seconds)
        deadline.note(end + timedelta(microseconds=1) if inclusive else end)
    return holds
