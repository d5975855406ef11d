"""Flat records exchanged between the service layer and a store.

The store persists these; the service converts them to and from domain objects. Keeping them
here (and not in the store) lets the store depend on the service, never the other way round.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]


class Role(enum.StrEnum):
    """What a token may do."""

    TENANT_MEMBER = "tenant_member"
    TENANT_ADMIN = "tenant_admin"
    PLATFORM_ADMIN = "platform_admin"
    AGENT = "agent"


class CounterKind(enum.StrEnum):
    """Quota counters kept per tenant and period."""

    API_CALLS = "api_calls"  # period: YYYY-MM-DD (UTC)
    GPU_SECONDS = "gpu_seconds"  # period: YYYY-MM (UTC)
    UPLOAD_BYTES = "upload_bytes"  # period: YYYY-MM (UTC)


@dataclass(slots=True)
class TenantRecord:
    name: str
    fairshare_weight: float = 1.0
    api_calls_per_day: int | None = None
    gpu_hours_per_month: float | None = None
    upload_bytes_per_month: int | None = None
    created_at: float = 0.0


@dataclass(slots=True)
class UserRecord:
    name: str
    role: Role
    tenant: str | None
    created_at: float = 0.0


@dataclass(slots=True)
class TokenRecord:
    id: str
    user: str
    secret_hash: str
    expires_at: float
    created_at: float
    revoked_at: float | None = None
    # The token that minted this one (None when issued locally): it bounds this one's lifetime
    # and revoking it revokes this one.
    parent: str | None = None


@dataclass(slots=True)
class JobRecord:
    """One job as stored: indexed columns plus the submitted spec and run-time state as JSON."""

    id: str
    tenant: str
    user: str
    job_class: int
    state: str
    gpus: int
    submitted_at: float
    spec: JsonDict
    attempts: int = 0
    node: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    last_checkpoint_at: float | None = None
    preempt_deadline: float | None = None
    preempt_reason: str | None = None
    checkpoint_ref: str | None = None
    allocation: JsonDict | None = None
    reason: str | None = None
    updated_at: float = 0.0
    version: int = 0  # 0: not stored yet


@dataclass(slots=True)
class EventRecord:
    job_id: str
    at: float
    kind: str
    detail: JsonDict = field(default_factory=dict)
    seq: int = 0


@dataclass(slots=True)
class TenantEventRecord:
    tenant: str
    at: float
    kind: str
    detail: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class NodeRecord:
    """A GPU node as registered by its agent (or an admin)."""

    name: str
    spec: JsonDict
    drained: bool = False
    last_heartbeat: float | None = None
    registered_at: float = 0.0
    down: bool = False


@dataclass(slots=True)
class FairshareRecord:
    tenant: str
    decayed_gpu_seconds: float
    updated_at: float


@dataclass(slots=True)
class CounterDelta:
    tenant: str
    kind: CounterKind
    period: str
    delta: float
    # Added only if the counter stays at or below this; otherwise the store refuses the whole
    # changeset (check and count in one step, so concurrent requests cannot pass a quota).
    ceiling: float | None = None
