"""The token that minted a token: bounds its lifetime, revoking it revokes the child.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("parent", sa.String(32), nullable=True))
    op.create_index("ix_tokens_parent", "tokens", ["parent"])


def downgrade() -> None:
    op.drop_index("ix_tokens_parent", table_name="tokens")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("parent")
