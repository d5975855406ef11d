"""Domain model of the scheduler: jobs, resources, nodes, tenants, usage and pass decisions.

Pure data, standard library only. Times are POSIX seconds (``float``) supplied by the caller;
nothing here reads a clock. The launch specification of a job (image, command, environment,
NAS mounts, checkpoint signal) is not scheduling-relevant and is kept by the service layer next
to these objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class JobClass(enum.IntEnum):
    """Priority class; a lower value is more urgent."""

    URGENT_INFERENCE = 1
    INFERENCE = 2
    FINE_TUNING = 3
    TRAINING = 4


class JobState(enum.StrEnum):
    """Life cycle of a job.

    A preempted or time-limited job is not a separate state: after its grace period it returns to
    ``PENDING`` with ``attempts`` incremented and ``checkpoint_ref`` pointing at the checkpoint it
    resumes from.
    """

    PENDING = "pending"
    RUNNING = "running"
    PREEMPTING = "preempting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset({JobState.RUNNING, JobState.PREEMPTING})


class Pool(enum.StrEnum):
    """Kind of GPU capacity a request draws from (derived from the request)."""

    WHOLE = "whole"
    MIG = "mig"
    VGPU = "vgpu"
    SHARE = "share"
    NONE = "none"


class GpuMode(enum.StrEnum):
    """How a physical GPU is offered.

    ``WHOLE`` GPUs are the passthrough / whole-device pool (training). ``MIG`` GPUs expose the MIG
    instances listed on them, ``VGPU`` GPUs expose slots of one vGPU profile, ``SHARED`` GPUs are
    time-sliced between fractional requests (inference).
    """

    WHOLE = "whole"
    MIG = "mig"
    VGPU = "vgpu"
    SHARED = "shared"


class PreemptReason(enum.StrEnum):
    PRIORITY = "priority"
    MAX_RUNTIME = "max_runtime"
    QUOTA = "quota"
    OPPORTUNISTIC = "opportunistic"


class QuotaLevel(enum.IntEnum):
    OK = 0
    WARNING = 1
    EXCEEDED = 2


class QuotaDimension(enum.StrEnum):
    API_CALLS_PER_DAY = "api_calls_per_day"
    GPU_HOURS_PER_MONTH = "gpu_hours_per_month"
    UPLOAD_BYTES_PER_MONTH = "upload_bytes_per_month"


@dataclass(frozen=True, slots=True)
class ResourceRequest:
    """What one job asks for.

    Exactly one GPU form is used: ``gpus`` whole GPUs (optionally each with at least
    ``gpu_memory_mib``), or one MIG instance of ``mig_profile``, or one vGPU slot of
    ``vgpu_profile``, or a fraction ``gpu_share_milli`` (1..999) of one time-sliced GPU with
    ``gpu_memory_mib`` of its memory. ``gpus == 0`` with no GPU form is a CPU-only job.
    """

    gpus: int = 1
    gpu_memory_mib: int | None = None
    mig_profile: str | None = None
    vgpu_profile: str | None = None
    gpu_share_milli: int | None = None
    cpu_milli: int = 1000
    memory_mib: int = 1024

    @property
    def pool(self) -> Pool:
        if self.mig_profile is not None:
            return Pool.MIG
        if self.vgpu_profile is not None:
            return Pool.VGPU
        if self.gpu_share_milli is not None:
            return Pool.SHARE
        if self.gpus == 0:
            return Pool.NONE
        return Pool.WHOLE

    @property
    def gpu_units(self) -> float:
        """GPU capacity in whole-GPU units (used for accounting and fairness)."""
        if self.gpu_share_milli is not None:
            return self.gpu_share_milli / 1000.0
        return float(self.gpus)


@dataclass(frozen=True, slots=True)
class MigInstance:
    id: str
    profile: str
    memory_mib: int


@dataclass(frozen=True, slots=True)
class VgpuProfile:
    name: str
    memory_mib: int
    max_instances: int


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    memory_mib: int
    mode: GpuMode = GpuMode.WHOLE
    nvlink_group: int | None = None
    utilization: float = 0.0
    model: str = ""
    uuid: str = ""
    mig_instances: tuple[MigInstance, ...] = ()
    vgpu_profile: VgpuProfile | None = None


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: tuple[Gpu, ...] = ()
    drained: bool = False
    healthy: bool = True

    @property
    def schedulable(self) -> bool:
        return self.healthy and not self.drained


@dataclass(frozen=True, slots=True)
class GpuSlice:
    """The part of one GPU an allocation holds."""

    gpu: int
    memory_mib: int
    share_milli: int = 1000
    mig_instance: str | None = None
    vgpu_slot: int | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """Where a job runs. ``opportunistic``: it took capacity held for another job that it may
    outlast, and that job may preempt it when its hold is due (see docs/policies.md, Backfill)."""

    node: str
    slices: tuple[GpuSlice, ...]
    cpu_milli: int
    memory_mib: int
    opportunistic: bool = False

    @property
    def gpu_units(self) -> float:
        return sum(s.share_milli for s in self.slices) / 1000.0

    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(s.gpu for s in self.slices)


@dataclass(slots=True)
class Job:
    id: str
    tenant: str
    user: str
    job_class: JobClass
    request: ResourceRequest
    submitted_at: float
    service: str | None = None
    max_runtime_s: float | None = None
    checkpoint_grace_s: float = 60.0
    min_runtime_s: float = 0.0
    state: JobState = JobState.PENDING
    attempts: int = 0
    started_at: float | None = None
    last_checkpoint_at: float | None = None
    checkpoint_ref: str | None = None
    allocation: Allocation | None = None
    preempt_deadline: float | None = None
    preempt_reason: PreemptReason | None = None

    def work_at_risk_s(self, now: float) -> float:
        """Seconds of work since the last checkpoint (what a kill now would lose)."""
        if self.started_at is None:
            return 0.0
        since = self.started_at
        if self.last_checkpoint_at is not None and self.last_checkpoint_at > since:
            since = self.last_checkpoint_at
        return max(0.0, now - since)


@dataclass(frozen=True, slots=True)
class Quotas:
    """Hard limits; ``None`` means unlimited."""

    api_calls_per_day: int | None = None
    gpu_hours_per_month: float | None = None
    upload_bytes_per_month: int | None = None


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    weight: float = 1.0
    quotas: Quotas = field(default_factory=Quotas)


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """Accounted usage of one tenant as of ``updated_at``.

    ``decayed_gpu_seconds`` is the half-life-decayed GPU time used by fair-share;
    ``month_gpu_seconds`` is the undecayed GPU time of calendar month ``month`` (``YYYY-MM``, UTC)
    used for the GPU-hours quota.
    """

    tenant: str
    updated_at: float = 0.0
    decayed_gpu_seconds: float = 0.0
    month: str = ""
    month_gpu_seconds: float = 0.0
    day: str = ""
    day_api_calls: int = 0
    month_upload_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Start:
    job_id: str
    allocation: Allocation


@dataclass(frozen=True, slots=True)
class Preemption:
    """Signal ``job_id`` to checkpoint; requeue it at ``deadline`` at the latest."""

    job_id: str
    reason: PreemptReason
    deadline: float
    for_job: str | None = None


@dataclass(frozen=True, slots=True)
class Requeue:
    """Stop ``job_id`` now (grace period over) and return it to the queue."""

    job_id: str
    reason: PreemptReason


@dataclass(frozen=True, slots=True)
class QuotaNotice:
    tenant: str
    dimension: QuotaDimension
    level: QuotaLevel
    ratio: float


@dataclass(slots=True)
class Decisions:
    """Result of one scheduling pass."""

    starts: list[Start] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    requeues: list[Requeue] = field(default_factory=list)
    quota_held: list[str] = field(default_factory=list)
    quota_notices: list[QuotaNotice] = field(default_factory=list)
    considered: int = 0


class Ordering(enum.StrEnum):
    """How the pending queue is ordered."""

    PRIORITY_FAIRSHARE = "priority_fairshare"
    FIFO = "fifo"


class Placement(enum.StrEnum):
    """How a GPU is chosen among those that fit."""

    PACKING_SCORE = "packing_score"
    BEST_FIT = "best_fit"


DEFAULT_MAX_RUNTIME_S: dict[JobClass, float] = {JobClass.TRAINING: 24 * 3600.0}


@dataclass(frozen=True, slots=True)
class Policy:
    """Tunables of a scheduling pass. The defaults are the production policy.

    ``fifo()`` and ``best_fit()`` build the simulator's baselines.
    """

    ordering: Ordering = Ordering.PRIORITY_FAIRSHARE
    placement: Placement = Placement.PACKING_SCORE
    backfill: bool = True
    preemption: bool = True
    half_life_s: float = 7 * 24 * 3600.0
    running_charge_s: float = 3600.0
    preempt_max_class: JobClass = JobClass.URGENT_INFERENCE
    max_preemptions_per_pass: int = 16
    reservation_searches: int = 4
    max_runtime_s: dict[JobClass, float] = field(default_factory=lambda: dict(DEFAULT_MAX_RUNTIME_S))
    gpu_quota_classes: frozenset[JobClass] = frozenset(JobClass)
    quota_requeue_running: bool = True
    quota_warning_ratio: float = 0.8
    max_utilization: float = 0.8
    shares_on_whole_gpus: bool = False
    strict_nvlink: bool = True
    cpu_overcommit: float = 2.0
    score_free_memory_weight: float = 0.6
    score_idle_weight: float = 0.4

    @classmethod
    def fifo(cls) -> Policy:
        """Baseline: one FIFO queue that stops at the first job that does not fit; best-fit placement,
        no preemption, no run-time limit."""
        return cls(
            ordering=Ordering.FIFO, placement=Placement.BEST_FIT, backfill=False, preemption=False, max_runtime_s={}
        )

    @classmethod
    def best_fit(cls) -> Policy:
        """Baseline: FIFO order with plain backfill and best-fit packing; no classes, fair-share,
        preemption, reservations or run-time limit."""
        return cls(
            ordering=Ordering.FIFO,
            placement=Placement.BEST_FIT,
            backfill=True,
            preemption=False,
            reservation_searches=0,
            max_runtime_s={},
        )
