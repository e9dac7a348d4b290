"""Rows as an older firebreak wrote them, for the tests of upgrading a history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, column, table


def old_run(engine: Engine, site: str, status: str, **fields: Any) -> None:
    """A finished backup run inserted as revision 0001 or 0002 wrote it: no series, no
    totals (today's write path would keep those, on a schema that has none)."""
    started = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)
    row: dict[str, Any] = {
        "source": "www",
        "site": site,
        "operation": "backup",
        "status": status,
        "started_at": started,
        "finished_at": started + timedelta(seconds=42),
        "duration_seconds": 42.0,
        "repository_initialized": False,
        "host": "h",
        **fields,
    }
    runs = table("runs", *(column(name) for name in row))
    with engine.begin() as connection:
        connection.execute(runs.insert().values(**row))
