"""Small builders for domain tests."""

from __future__ import annotations

from gpunas_scheduler.domain.model import (
    Allocation,
    Gpu,
    GpuMode,
    Job,
    JobClass,
    JobState,
    MigInstance,
    Node,
    ResourceRequest,
    VgpuProfile,
)

GIB = 1024


def node(
    name: str,
    gpus: int = 8,
    memory_gib: int = 80,
    nvlink_size: int | None = 8,
    mode: GpuMode = GpuMode.WHOLE,
    utilization: float = 0.0,
    cpu_milli: int = 128_000,
    memory_mib: int = 1024 * GIB,
    drained: bool = False,
) -> Node:
    return Node(
        name,
        cpu_milli,
        memory_mib,
        tuple(
            Gpu(
                i,
                memory_gib * GIB,
                mode=mode,
                nvlink_group=None if nvlink_size is None else i // nvlink_size,
                utilization=utilization,
            )
            for i in range(gpus)
        ),
        drained=drained,
    )


def mig_node(name: str, layout: tuple[tuple[str, int], ...] = (("1g.10gb", 10 * GIB),) * 7) -> Node:
    instances = tuple(MigInstance(f"{name}-g0-i{i}", profile, mem) for i, (profile, mem) in enumerate(layout))
    return Node(name, 64_000, 256 * GIB, (Gpu(0, 80 * GIB, mode=GpuMode.MIG, mig_instances=instances),))


def vgpu_node(name: str, profile_gib: int = 8, slots: int = 3) -> Node:
    profile = VgpuProfile(f"{profile_gib}Q", profile_gib * GIB, slots)
    return Node(name, 64_000, 256 * GIB, (Gpu(0, 24 * GIB, mode=GpuMode.VGPU, vgpu_profile=profile),))


def job(
    job_id: str,
    tenant: str = "suwon",
    job_class: JobClass = JobClass.TRAINING,
    gpus: int = 1,
    submitted_at: float = 0.0,
    **kwargs: object,
) -> Job:
    request_fields = {k: kwargs.pop(k) for k in list(kwargs) if k in ResourceRequest.__dataclass_fields__}
    request = ResourceRequest(gpus=gpus, cpu_milli=1000, memory_mib=1024, **request_fields)  # type: ignore[arg-type]
    return Job(job_id, tenant, "alice", job_class, request, submitted_at, **kwargs)  # type: ignore[arg-type]


def running(j: Job, alloc: Allocation, started_at: float, state: JobState = JobState.RUNNING) -> Job:
    j.state = state
    j.allocation = alloc
    j.started_at = started_at
    return j
