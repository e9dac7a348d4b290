"""The latest state of every series, and run totals: history that stays fast for years.

- ``series``: per host × operation × source × site, where its newest run, newest success,
  oldest success, newest verdict on the data and newest verdict on the repository are, and
  the failures since the last success (history/series.py keeps it as runs start and end).
  A scrape reads it instead of grouping the whole history.
- ``run_totals``: how many runs of each series ended with each status, and their durations
  in the histogram's buckets: the counters, which retention must not make go backwards.
- Indexes lead with the host: every query is one host's.

Both tables are filled from the history as it is (one pass; minutes on a fleet's tens of
millions of runs).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# As they were when this revision was written (a migration must not change with the code).
DATA_VERDICTS = ("CheckFailed", "DrillFailed")
SITE_LOSSES = ("RepositoryLost", "RepositoryReplaced")
JUDGED = ("backup", "check", "drill", "forget", "restore", "reset")
BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200)


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("operation", sa.String(32), primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("last_success_id", sa.Integer(), nullable=True),
        sa.Column("first_success_id", sa.Integer(), nullable=True),
        sa.Column("last_verdict_id", sa.Integer(), nullable=True),
        sa.Column("last_identity_id", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    op.create_table(
        "run_totals",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("operation", sa.String(32), primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("le", sa.String(16), primary_key=True),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
    )
    op.drop_index("ix_runs_latest", "runs")
    op.drop_index("ix_runs_status", "runs")
    op.drop_index("ix_runs_site", "runs")
    op.drop_index("ix_cycles_source_started", "cycles")
    op.create_index(
        "ix_runs_series_status", "runs", ["host", "operation", "source", "site", "status", "id"]
    )
    op.create_index("ix_runs_host_site", "runs", ["host", "site", "id"])
    op.create_index("ix_runs_host_started", "runs", ["host", "started_at"])
    op.create_index("ix_cycles_host_source_started", "cycles", ["host", "source", "started_at"])
    op.create_index("ix_cycles_host_source_id", "cycles", ["host", "source", "id"])

    _fill_series()
    _fill_totals()


runs = sa.table(
    "runs",
    *(
        sa.column(name)
        for name in ("id", "host", "operation", "source", "site", "status", "error_class")
    ),
    sa.column("duration_seconds", sa.Float()),
)
SERIES = ("host", "operation", "source", "site")
POINTERS = (
    "last_run_id",
    "last_success_id",
    "first_success_id",
    "last_verdict_id",
    "last_identity_id",
)


def _fill_series() -> None:
    series = sa.table("series", *(sa.column(name) for name in (*SERIES, *POINTERS, "failures")))
    c = runs.c
    source = sa.func.coalesce(c.source, "")
    success = c.status == "success"
    verdict = success | ((c.status == "failed") & c.error_class.in_(DATA_VERDICTS))
    identity = (c.status.in_(("success", "partial")) & c.operation.in_(JUDGED)) | (
        c.error_class.in_(SITE_LOSSES)
    )
    op.execute(
        series.insert().from_select(
            [col.name for col in series.c],
            sa.select(
                c.host,
                c.operation,
                source,
                c.site,
                sa.func.max(c.id),
                sa.func.max(sa.case((success, c.id))),
                sa.func.min(sa.case((success, c.id))),
                sa.func.max(sa.case((verdict, c.id))),
                sa.func.max(sa.case((identity, c.id))),
                sa.literal(0),
            ).group_by(c.host, c.operation, source, c.site),
        )
    )
    failed = (
        sa.select(sa.func.count())
        .select_from(runs)
        .where(
            c.host == series.c.host,
            c.operation == series.c.operation,
            source == series.c.source,
            c.site == series.c.site,
            c.status == "failed",
            c.id > sa.func.coalesce(series.c.last_success_id, 0),
        )
        .scalar_subquery()
    )
    op.execute(series.update().values(failures=failed))


def _fill_totals() -> None:
    totals = sa.table(
        "run_totals", *(sa.column(name) for name in (*SERIES, "status", "le", "runs", "seconds"))
    )
    c = runs.c
    seconds = sa.func.coalesce(c.duration_seconds, 0)
    le = sa.case(*((seconds <= bound, str(bound)) for bound in BUCKETS), else_="+Inf")
    finished = (
        sa.select(
            c.host,
            c.operation,
            sa.func.coalesce(c.source, "").label("source"),
            c.site,
            c.status,
            le.label("le"),
            seconds.label("seconds"),
        )
        .where(c.status != "running")
        .subquery()
    )
    f = finished.c
    op.execute(
        totals.insert().from_select(
            [col.name for col in totals.c],
            sa.select(
                f.host,
                f.operation,
                f.source,
                f.site,
                f.status,
                f.le,
                sa.func.count(),
                sa.func.sum(f.seconds),
            ).group_by(f.host, f.operation, f.source, f.site, f.status, f.le),
        )
    )


def downgrade() -> None:
    op.drop_index("ix_cycles_host_source_id", "cycles")
    op.drop_index("ix_cycles_host_source_started", "cycles")
    op.drop_index("ix_runs_host_started", "runs")
    op.drop_index("ix_runs_host_site", "runs")
    op.drop_index("ix_runs_series_status", "runs")
    op.create_index("ix_cycles_source_started", "cycles", ["source", "started_at"])
    op.create_index("ix_runs_site", "runs", ["site", "id"])
    op.create_index("ix_runs_status", "runs", ["source", "site", "operation", "status", "id"])
    op.create_index("ix_runs_latest", "runs", ["source", "site", "operation", "id"])
    op.drop_table("run_totals")
    op.drop_table("series")
