"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/versions`` create the same schema;
``tests/store/test_migrations.py`` checks that they agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("fairshare_weight", Float, nullable=False),
    Column("api_calls_per_day", Integer, nullable=True),
    Column("gpu_hours_per_month", Float, nullable=True),
    Column("upload_bytes_per_month", BigInteger, nullable=True),
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("tenant", String(64), ForeignKey("tenants.name"), nullable=True),
    Index("ix_users_tenant", "tenant"),
    Column("created_at", Float, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(64), ForeignKey("users.name"), nullable=False),
    Index("ix_tokens_user", "user"),
    Column("secret_hash", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("parent", String(32), nullable=True),
    Index("ix_tokens_parent", "parent"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("user", String(64), nullable=False),
    Column("job_class", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("node", String(128), nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("last_checkpoint_at", Float, nullable=True),
    Column("preempt_deadline", Float, nullable=True),
    Column("preempt_reason", String(16), nullable=True),
    Column("checkpoint_ref", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("spec", Text, nullable=False),
    Column("allocation", Text, nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_jobs_state", "state"),
    Index("ix_jobs_tenant_id", "tenant", "id"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_job_events_job", "job_id", "seq"),
)

tenant_events = Table(
    "tenant_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_tenant_events_tenant", "tenant", "seq"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("drained", Boolean, nullable=False),
    Column("down", Boolean, nullable=False),
    Column("last_heartbeat", Float, nullable=True),
    Column("registered_at", Float, nullable=False),
)

usage_counters = Table(
    "usage_counters",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("period", String(10), primary_key=True),
    Column("value", Float, nullable=False),
)

fairshare_usage = Table(
    "fairshare_usage",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("decayed_gpu_seconds", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row (id 1): the leadership term, raised by every server that becomes leader. The scheduling
# loop's commits check it, so a leader that lost its lock mid-pass cannot write its decisions.
leader_term = Table(
    "leader_term",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("term", BigInteger, nullable=False),
    # The leader lease: who leads, and until when unless renewed (see store/leader.py).
    Column("holder", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
)
