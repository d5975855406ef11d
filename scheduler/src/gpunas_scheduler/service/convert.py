"""Conversions between stored records (JSON-friendly) and domain objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpunas_scheduler.domain.model import (
    Allocation,
    Gpu,
    GpuMode,
    GpuSlice,
    Job,
    JobClass,
    JobState,
    MigInstance,
    Node,
    PreemptReason,
    Quotas,
    ResourceRequest,
    Tenant,
    VgpuProfile,
)
from gpunas_scheduler.service.records import JobRecord, JsonDict, NodeRecord, TenantRecord


def request_from_json(r: JsonDict) -> ResourceRequest:
    return ResourceRequest(
        gpus=int(r.get("gpus", 1)),
        gpu_memory_mib=r.get("gpu_memory_mib"),
        mig_profile=r.get("mig_profile"),
        vgpu_profile=r.get("vgpu_profile"),
        gpu_share_milli=r.get("gpu_share_milli"),
        cpu_milli=int(r.get("cpu_milli", 1000)),
        memory_mib=int(r.get("memory_mib", 1024)),
    )


def allocation_to_json(a: Allocation) -> JsonDict:
    return {
        "node": a.node,
        "cpu_milli": a.cpu_milli,
        "memory_mib": a.memory_mib,
        "opportunistic": a.opportunistic,
        "slices": [
            {
                "gpu": s.gpu,
                "memory_mib": s.memory_mib,
                "share_milli": s.share_milli,
                "mig_instance": s.mig_instance,
                "vgpu_slot": s.vgpu_slot,
            }
            for s in a.slices
        ],
    }


def allocation_from_json(d: JsonDict) -> Allocation:
    return Allocation(
        node=str(d["node"]),
        cpu_milli=int(d["cpu_milli"]),
        memory_mib=int(d["memory_mib"]),
        opportunistic=bool(d.get("opportunistic", False)),
        slices=tuple(
            GpuSlice(
                gpu=int(s["gpu"]),
                memory_mib=int(s["memory_mib"]),
                share_milli=int(s.get("share_milli", 1000)),
                mig_instance=s.get("mig_instance"),
                vgpu_slot=s.get("vgpu_slot"),
            )
            for s in d.get("slices", [])
        ),
    )


@dataclass(frozen=True, slots=True)
class ClassLimits:
    """Admin-set bounds of a class on what a submitter may exempt from preemption."""

    max_min_runtime_s: float = 1800.0
    max_checkpoint_grace_s: float = 300.0


def job_from_record(rec: JobRecord, limits: ClassLimits) -> Job:
    """The domain job of ``rec``, its exemptions held to ``limits`` (also for jobs queued before a
    limit was set or lowered)."""
    spec = rec.spec
    max_rt = spec.get("max_runtime_s")
    return Job(
        id=rec.id,
        tenant=rec.tenant,
        user=rec.user,
        job_class=JobClass(rec.job_class),
        request=request_from_json(spec.get("resources", {})),
        submitted_at=rec.submitted_at,
        service=spec.get("service"),
        max_runtime_s=None if max_rt is None else float(max_rt),
        checkpoint_grace_s=min(float(spec.get("checkpoint_grace_s", 60)), limits.max_checkpoint_grace_s),
        min_runtime_s=min(float(spec.get("min_runtime_s", 0)), limits.max_min_runtime_s),
        state=JobState(rec.state),
        attempts=rec.attempts,
        started_at=rec.started_at,
        last_checkpoint_at=rec.last_checkpoint_at,
        checkpoint_ref=rec.checkpoint_ref,
        allocation=None if rec.allocation is None else allocation_from_json(rec.allocation),
        preempt_deadline=rec.preempt_deadline,
        preempt_reason=None if rec.preempt_reason is None else PreemptReason(rec.preempt_reason),
    )


def _gpu_from_json(g: JsonDict) -> Gpu:
    vp = g.get("vgpu_profile")
    return Gpu(
        index=int(g["index"]),
        memory_mib=int(g["memory_mib"]),
        mode=GpuMode(g.get("mode", "whole")),
        nvlink_group=g.get("nvlink_group"),
        utilization=float(g.get("utilization", 0.0)),
        model=str(g.get("model", "")),
        uuid=str(g.get("uuid", "")),
        mig_instances=tuple(
            MigInstance(id=str(m["id"]), profile=str(m["profile"]), memory_mib=int(m["memory_mib"]))
            for m in g.get("mig_instances", [])
        ),
        vgpu_profile=None
        if vp is None
        else VgpuProfile(
            name=str(vp["name"]), memory_mib=int(vp["memory_mib"]), max_instances=int(vp["max_instances"])
        ),
    )


def node_from_record(rec: NodeRecord) -> Node:
    spec: dict[str, Any] = rec.spec
    return Node(
        name=rec.name,
        cpu_milli=int(spec["cpu_milli"]),
        memory_mib=int(spec["memory_mib"]),
        gpus=tuple(_gpu_from_json(g) for g in spec.get("gpus", [])),
        drained=rec.drained,
        healthy=not rec.down,
    )


def tenant_from_record(rec: TenantRecord) -> Tenant:
    return Tenant(
        name=rec.name,
        weight=rec.fairshare_weight,
        quotas=Quotas(
            api_calls_per_day=rec.api_calls_per_day,
            gpu_hours_per_month=rec.gpu_hours_per_month,
            upload_bytes_per_month=rec.upload_bytes_per_month,
        ),
    )
