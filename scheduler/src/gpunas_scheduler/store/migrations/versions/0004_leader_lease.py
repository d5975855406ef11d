"""The leader lease: a hung leader loses leadership when its lease runs out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leader_term", sa.Column("holder", sa.String(64), nullable=True))
    op.add_column("leader_term", sa.Column("lease_until", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leader_term") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("holder")
