"""Site repositories and site-wide runs.

- ``site_repositories``: the restic repository id firebreak found at each repository (a site's
  normalised URL or path, credentials removed) the first time it wrote there, and each one an
  operator recorded since with ``firebreak site reset``: a missing or different repository
  where one was is a lost site, never a new one, whichever host asks.
- ``runs.source`` may be empty: a ``restic check`` (or a site reset) concerns the whole
  repository, not one source.
- ``ix_runs_site``: the newest runs at a site, whatever their source.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_repositories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("repository", sa.String(1024), nullable=False),
        sa.Column("repository_id", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(512), nullable=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
        ),
    )
    op.create_index("ix_site_repositories_repository", "site_repositories", ["repository", "id"])
    with op.batch_alter_table("runs") as runs:
        runs.alter_column("source", existing_type=sa.String(64), nullable=True)
    op.create_index("ix_runs_site", "runs", ["site", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_site", "runs")
    op.execute("UPDATE runs SET source = '' WHERE source IS NULL")  # 0001 requires one
    with op.batch_alter_table("runs") as runs:
        runs.alter_column("source", existing_type=sa.String(64), nullable=False)
    op.drop_index("ix_site_repositories_repository", "site_repositories")
    op.drop_table("site_repositories")
