"""Initial schema: tenants, users, tokens, jobs, job events, tenant events, nodes, usage.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
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
        "tenants",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("fairshare_weight", sa.Float, nullable=False),
        sa.Column("api_calls_per_day", sa.Integer, nullable=True),
        sa.Column("gpu_hours_per_month", sa.Float, nullable=True),
        sa.Column("upload_bytes_per_month", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_users_tenant", "users", ["tenant"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_tokens_user", "tokens", ["user"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("job_class", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("node", sa.String(128), nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("last_checkpoint_at", sa.Float, nullable=True),
        sa.Column("preempt_deadline", sa.Float, nullable=True),
        sa.Column("preempt_reason", sa.String(16), nullable=True),
        sa.Column("checkpoint_ref", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("allocation", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_tenant_id", "jobs", ["tenant", "id"])
    op.create_table(
        "job_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "seq"])
    op.create_table(
        "tenant_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_tenant_events_tenant", "tenant_events", ["tenant", "seq"])
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("drained", sa.Boolean, nullable=False),
        sa.Column("down", sa.Boolean, nullable=False),
        sa.Column("last_heartbeat", sa.Float, nullable=True),
        sa.Column("registered_at", sa.Float, nullable=False),
    )
    op.create_table(
        "usage_counters",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("period", sa.String(10), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_table(
        "fairshare_usage",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("decayed_gpu_seconds", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "fairshare_usage",
        "usage_counters",
        "nodes",
        "tenant_events",
        "job_events",
        "jobs",
        "tokens",
        "users",
        "tenants",
    ):
        op.drop_table(table)
