"""Cycles and runs: the run history.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("sites_total", sa.Integer(), nullable=False),
        sa.Column("sites_succeeded", sa.Integer(), nullable=False),
    )
    op.create_index("ix_cycles_source_started", "cycles", ["source", "started_at"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "cycle_id", sa.Integer(), sa.ForeignKey("cycles.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error_class", sa.String(64), nullable=True),
        sa.Column("error_message", sa.String(512), nullable=True),
        sa.Column("snapshot_id", sa.String(64), nullable=True),
        sa.Column("files_new", sa.BigInteger(), nullable=True),
        sa.Column("files_changed", sa.BigInteger(), nullable=True),
        sa.Column("files_unmodified", sa.BigInteger(), nullable=True),
        sa.Column("bytes_added", sa.BigInteger(), nullable=True),
        sa.Column("bytes_processed", sa.BigInteger(), nullable=True),
        sa.Column("repository_initialized", sa.Boolean(), nullable=False),
        sa.Column("restic_version", sa.String(32), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
    )
    op.create_index("ix_runs_latest", "runs", ["source", "site", "operation", "id"])
    op.create_index("ix_runs_status", "runs", ["source", "site", "operation", "status", "id"])
    op.create_index("ix_runs_cycle", "runs", ["cycle_id"])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("cycles")
