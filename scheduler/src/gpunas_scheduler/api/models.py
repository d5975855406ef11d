"""Request and response bodies. Every input is bounded (length, count, range), strictly typed, and
strings exclude control characters, so nothing unbounded or unstorable reaches the service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
ShortText = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
EnvKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
ClassName = Literal["urgent_inference", "inference", "fine_tuning", "training"]
StateName = Literal["pending", "running", "preempting", "succeeded", "failed", "cancelled"]
RoleName = Literal["tenant_member", "tenant_admin", "platform_admin", "agent"]


class Strict(BaseModel):
    """Input bodies: unknown fields refused and no coercion (``"4"`` or ``true`` is not an integer,
    ``1`` not a boolean); an integer is still taken where a number is declared."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Resources(Strict):
    gpus: int = Field(1, ge=0, le=64, description="Whole GPUs (1 with a MIG, vGPU or share request)")
    gpu_memory_mib: int | None = Field(None, ge=1, le=1_048_576, description="GPU memory needed per GPU")
    mig_profile: str | None = Field(None, pattern=r"^[1-8]g\.[0-9]{1,3}gb(\+me)?$", examples=["1g.10gb"])
    vgpu_profile: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$", examples=["A10-8Q"])
    gpu_share_milli: int | None = Field(None, ge=1, le=999, description="Fraction of one time-sliced GPU")
    cpu_milli: int = Field(1000, ge=1, le=1_024_000)
    memory_mib: int = Field(1024, ge=1, le=16_777_216)


class Mount(Strict):
    source: str = Field(pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,255}$", description="NAS share or dataset")
    target: str = Field(pattern=r"^/[A-Za-z0-9._/-]{0,255}$")
    read_only: bool = True


class JobSubmit(Strict):
    tenant: Name | None = Field(None, description="Only platform admins name a tenant; others submit to their own")
    name: ShortText | None = None
    image: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511}$", examples=["nvcr.io/nvidia/pytorch:24.05-py3"])
    command: list[Text] = Field(default_factory=list, max_length=256)
    env: dict[EnvKey, Text] = Field(default_factory=dict, max_length=128)
    job_class: ClassName
    resources: Resources = Field(default_factory=Resources)
    max_runtime_s: int | None = Field(None, ge=1, le=31_536_000)
    min_runtime_s: int = Field(0, ge=0, le=31_536_000, description="Not preempted before this run time")
    checkpoint_signal: str = Field("SIGTERM", pattern=r"^SIG[A-Z0-9]{2,8}$")
    checkpoint_grace_s: int = Field(60, ge=0, le=3600)
    service: Name | None = Field(None, description="Replica group: replicas go to different nodes")
    mounts: list[Mount] = Field(default_factory=list, max_length=16)


class Submitted(BaseModel):
    id: str
    tenant: str
    state: StateName
    submitted_at: float


class JobOut(BaseModel):
    id: str
    tenant: str
    user: str
    name: str | None
    job_class: ClassName
    state: StateName
    attempts: int
    node: str | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    last_checkpoint_at: float | None
    checkpoint_ref: str | None
    preempt_deadline: float | None
    preempt_reason: str | None
    reason: str | None
    spec: dict[str, Any]
    allocation: dict[str, Any] | None


class JobList(BaseModel):
    jobs: list[JobOut]
    next_before: str | None = Field(description="Pass as ?before= for the next page; null on the last page")


class EventOut(BaseModel):
    seq: int
    at: float
    kind: str
    detail: dict[str, Any]


class TenantIn(Strict):
    fairshare_weight: float = Field(1.0, gt=0, le=1_000_000, allow_inf_nan=False)
    api_calls_per_day: int | None = Field(None, ge=0, le=1_000_000_000)
    gpu_hours_per_month: float | None = Field(None, ge=0, le=1_000_000_000, allow_inf_nan=False)
    upload_bytes_per_month: int | None = Field(None, ge=0, le=2**62)


class TenantOut(BaseModel):
    name: str
    fairshare_weight: float
    api_calls_per_day: int | None
    gpu_hours_per_month: float | None
    upload_bytes_per_month: int | None


class TenantEventOut(BaseModel):
    at: float
    kind: str
    detail: dict[str, Any]


class UsageOut(BaseModel):
    tenant: TenantOut
    day: str
    month: str
    api_calls_today: float
    gpu_hours_month: float
    upload_bytes_month: float
    decayed_gpu_hours: float
    ratios: dict[str, float | None]
    recent_events: list[TenantEventOut]


class UploadIn(Strict):
    bytes: int = Field(ge=1, le=2**50)


class UploadOut(BaseModel):
    accepted: bool
    ratio: float


class UserIn(Strict):
    name: Name
    role: RoleName
    tenant: Name | None = None


class UserOut(BaseModel):
    name: str
    role: RoleName
    tenant: str | None
    created_at: float


class TokenIn(Strict):
    user: Name
    ttl_s: int | None = Field(None, ge=60, le=31_536_000)


class TokenOut(BaseModel):
    id: str
    user: str
    created_at: float
    expires_at: float
    revoked_at: float | None


class IssuedTokenOut(TokenOut):
    token: str = Field(description="Shown once; only its hash is stored")


class WhoAmI(BaseModel):
    user: str
    role: RoleName
    tenant: str | None


class MigInstanceIn(Strict):
    id: ShortText
    profile: str = Field(pattern=r"^[1-8]g\.[0-9]{1,3}gb(\+me)?$")
    memory_mib: int = Field(ge=1, le=1_048_576)


class VgpuProfileIn(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    memory_mib: int = Field(ge=1, le=1_048_576)
    max_instances: int = Field(ge=1, le=64)


class GpuIn(Strict):
    index: int = Field(ge=0, le=63)
    memory_mib: int = Field(ge=1, le=1_048_576)
    mode: Literal["whole", "mig", "vgpu", "shared"] = "whole"
    nvlink_group: int | None = Field(None, ge=0, le=63)
    utilization: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    model: ShortText = ""
    uuid: ShortText = ""
    mig_instances: list[MigInstanceIn] = Field(default_factory=list, max_length=7)
    vgpu_profile: VgpuProfileIn | None = None


class NodeIn(Strict):
    cpu_milli: int = Field(ge=1, le=10_240_000)
    memory_mib: int = Field(ge=1, le=268_435_456)
    gpus: list[GpuIn] = Field(default_factory=list, max_length=64)

    @field_validator("gpus")
    @classmethod
    def _unique_indexes(cls, gpus: list[GpuIn]) -> list[GpuIn]:
        indexes = [g.index for g in gpus]
        duplicates = sorted({i for i in indexes if indexes.count(i) > 1})
        if duplicates:
            raise ValueError(f"GPU index given more than once: {', '.join(map(str, duplicates))}")
        return gpus


class NodeOut(BaseModel):
    name: str
    drained: bool
    down: bool
    last_heartbeat: float | None
    registered_at: float
    cpu_milli: int
    memory_mib: int
    gpus: list[dict[str, Any]]
    allocated_gpu_units: float
    jobs: list[str]


class HeartbeatIn(Strict):
    utilization: dict[
        Annotated[str, StringConstraints(pattern=r"^[0-9]{1,2}$")],
        Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)],
    ] = Field(default_factory=dict, max_length=64, description="GPU index -> utilisation 0..1")


class ReportIn(Strict):
    status: Literal["started", "checkpointed", "succeeded", "failed"]
    checkpoint_ref: ShortText | None = None
    exit_code: int | None = Field(None, ge=-255, le=255)
    message: ShortText | None = None


class Assignment(BaseModel):
    job: JobOut
    action: Literal["run", "checkpoint_and_stop"]
    signal: str | None
    deadline: float | None


class ErrorOut(BaseModel):
    error: str
    field: str | None = None


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrorOut(BaseModel):
    error: str
    fields: list[FieldError]


class Health(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
