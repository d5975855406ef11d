"""Leadership term that fences the scheduling loop's commits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "leader_term",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("term", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "term": 0}])


def downgrade() -> None:
    op.drop_table("leader_term")
