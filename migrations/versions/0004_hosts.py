"""Hosts: each daemon's heartbeat, and what its config asks of its sources; and who holds the
fleet's lock on a repository.

- ``hosts``: one row per host name, written when its daemon starts, every heartbeat, on a
  reload and when it stops; a fleet exporter and ``firebreak status --fleet`` read it to find
  hosts that went silent, and to judge their sources' freshness without their config.
- ``site_repositories.repository``: a local path is qualified by the host that recorded it
  (``web1:local:/srv/restic``): two hosts' /srv/restic are two repositories, not one
  replaced by the other.
- ``repository_locks``: the host holding PostgreSQL's advisory lock on a repository (for
  maintenance that takes restic's exclusive lock, and for creating a repository), so the
  hosts that wait or skip can say who.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("profile", sa.Text(), nullable=False),
    )

    op.create_table(
        "repository_locks",
        sa.Column("repository", sa.String(1024), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(255), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
    )

    _requalify(lambda host, where: f"{host}:{where}" if _own(where) else where)


def downgrade() -> None:
    _requalify(lambda host, where: where.removeprefix(f"{host}:"))
    op.drop_table("repository_locks")
    op.drop_table("hosts")


def _own(where: str) -> bool:
    """A location only its host can reach: a local path (as placement/targets.py said when
    this revision was written)."""
    return where.startswith("local:")


def _requalify(change: Callable[[str, str], str]) -> None:
    rows = sa.table(
        "site_repositories", sa.column("id"), sa.column("host"), sa.column("repository")
    )
    connection = op.get_bind()
    for row_id, host, where in connection.execute(
        sa.select(rows.c.id, rows.c.host, rows.c.repository)
    ).all():
        changed = change(host, where)
        if changed != where:
            connection.execute(rows.update().where(rows.c.id == row_id).values(repository=changed))
