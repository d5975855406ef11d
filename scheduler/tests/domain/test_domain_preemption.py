"""Preemption, grace periods, max run time and GPU-hour quotas in a pass."""

from __future__ import annotations

from datetime import datetime, timezone

from domain_factories import GIB, job, node, running

from gpunas_scheduler.domain import schedule
from gpunas_scheduler.domain.model import (
    Allocation,
    GpuSlice,
    JobClass,
    JobState,
    Policy,
    PreemptReason,
    QuotaLevel,
    Quotas,
    Tenant,
    TenantUsage,
)

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()


def whole(gpu: int, node_name: str = "a") -> Allocation:
    return Allocation(node_name, (GpuSlice(gpu, 80 * GIB),), 1000, 1024)


def training(job_id: str, gpu: int, started: float, checkpoint: float | None = None, **kw) -> object:
    j = running(job(job_id, **kw), whole(gpu), started)
    j.last_checkpoint_at = checkpoint
    return j


def test_urgent_job_preempts_the_victim_losing_least_work():
    victims = [
        training("old-ckpt", 0, NOW - 7200, checkpoint=NOW - 3600),
        training("fresh-ckpt", 1, NOW - 7200, checkpoint=NOW - 60),
    ]
    urgent = job("urgent", job_class=JobClass.URGENT_INFERENCE, submitted_at=NOW)
    d = schedule([urgent], victims, [node("a", gpus=2, nvlink_size=None)], {}, {}, NOW)
    assert d.starts == []
    assert [(p.job_id, p.reason, p.for_job) for p in d.preemptions] == [
        ("fresh-ckpt", PreemptReason.PRIORITY, "urgent")
    ]
    assert d.preemptions[0].deadline == NOW + victims[1].checkpoint_grace_s


def test_minimum_run_time_exempts_young_jobs():
    young = training("young", 0, NOW - 30, min_runtime_s=600)
    urgent = job("urgent", job_class=JobClass.URGENT_INFERENCE, submitted_at=NOW)
    d = schedule([urgent], [young], [node("a", gpus=1)], {}, {}, NOW)
    assert d.preemptions == []


def test_only_lower_classes_are_preempted_and_only_by_allowed_classes():
    tuning = training("tune", 0, NOW - 3600, job_class=JobClass.FINE_TUNING)
    other_tune = job("tune2", job_class=JobClass.FINE_TUNING, submitted_at=NOW)
    assert schedule([other_tune], [tuning], [node("a", gpus=1)], {}, {}, NOW).preemptions == []
    inference = job("inf", job_class=JobClass.INFERENCE, submitted_at=NOW)
    assert schedule([inference], [tuning], [node("a", gpus=1)], {}, {}, NOW).preemptions == []
    wider = Policy(preempt_max_class=JobClass.INFERENCE)
    d = schedule([inference], [tuning], [node("a", gpus=1)], {}, {}, NOW, wider)
    assert [p.job_id for p in d.preemptions] == ["tune"]
    urgent = job("urgent", job_class=JobClass.URGENT_INFERENCE, submitted_at=NOW)
    d = schedule([urgent], [tuning], [node("a", gpus=1)], {}, {}, NOW, Policy(preemption=False))
    assert d.preemptions == []


def test_multi_gpu_preemption_frees_a_whole_nvlink_group():
    jobs = [training(f"t{i}", i, NOW - 1000 * (i + 1), checkpoint=NOW - 100 * (i + 1)) for i in range(4)]
    urgent = job("urgent", gpus=2, job_class=JobClass.URGENT_INFERENCE, submitted_at=NOW)
    d = schedule([urgent], jobs, [node("a", gpus=4, nvlink_size=2)], {}, {}, NOW)
    assert sorted(p.job_id for p in d.preemptions) == ["t0", "t1"]


def test_no_second_preemption_while_one_is_in_flight():
    victim = training("v", 0, NOW - 3600)
    victim.state = JobState.PREEMPTING
    victim.preempt_reason = PreemptReason.PRIORITY
    victim.preempt_deadline = NOW + 30
    other = training("w", 1, NOW - 3600)
    urgent = job("urgent", job_class=JobClass.URGENT_INFERENCE, submitted_at=NOW)
    d = schedule([urgent], [victim, other], [node("a", gpus=2, nvlink_size=None)], {}, {}, NOW)
    assert d.preemptions == []
    assert d.requeues == []


def test_grace_period_expiry_requeues():
    victim = training("v", 0, NOW - 3600)
    victim.state = JobState.PREEMPTING
    victim.preempt_reason = PreemptReason.PRIORITY
    victim.preempt_deadline = NOW - 1
    d = schedule([], [victim], [node("a", gpus=1)], {}, {}, NOW)
    assert [(r.job_id, r.reason) for r in d.requeues] == [("v", PreemptReason.PRIORITY)]


def test_training_over_24_hours_is_checkpointed_and_requeued():
    long = training("long", 0, NOW - 24 * 3600 - 1)
    short = training("short", 1, NOW - 24 * 3600 + 60)
    service = running(job("svc", job_class=JobClass.INFERENCE), whole(2), NOW - 90 * 24 * 3600)
    d = schedule([], [long, short, service], [node("a", gpus=3, nvlink_size=None)], {}, {}, NOW)
    assert [(p.job_id, p.reason) for p in d.preemptions] == [("long", PreemptReason.MAX_RUNTIME)]


def test_job_max_runtime_tighter_than_class_limit():
    j = training("j", 0, NOW - 120, max_runtime_s=60)
    d = schedule([], [j], [node("a", gpus=1)], {}, {}, NOW)
    assert [p.job_id for p in d.preemptions] == ["j"]


def test_tenant_at_gpu_quota_waits_and_is_warned():
    tenants = {
        "yongin": Tenant("yongin", quotas=Quotas(gpu_hours_per_month=50)),
        "suwon": Tenant("suwon", quotas=Quotas(gpu_hours_per_month=100)),
    }
    usage = {
        "yongin": TenantUsage("yongin", NOW, month="2026-11", month_gpu_seconds=50 * 3600.0),
        "suwon": TenantUsage("suwon", NOW, month="2026-11", month_gpu_seconds=85 * 3600.0),
    }
    pending = [job("y", tenant="yongin", submitted_at=1), job("s", tenant="suwon", submitted_at=2)]
    d = schedule(pending, [], [node("a", gpus=2, nvlink_size=None)], tenants, usage, NOW)
    assert [s.job_id for s in d.starts] == ["s"]
    assert d.quota_held == ["y"]
    assert {(n.tenant, n.level) for n in d.quota_notices} == {
        ("yongin", QuotaLevel.EXCEEDED),
        ("suwon", QuotaLevel.WARNING),
    }


def test_running_work_of_a_tenant_at_quota_is_checkpointed():
    tenants = {"yongin": Tenant("yongin", quotas=Quotas(gpu_hours_per_month=50))}
    usage = {"yongin": TenantUsage("yongin", NOW, month="2026-11", month_gpu_seconds=50 * 3600.0)}
    j = training("j", 0, NOW - 600, tenant="yongin")
    d = schedule([], [j], [node("a", gpus=1)], tenants, usage, NOW)
    assert [(p.job_id, p.reason) for p in d.preemptions] == [("j", PreemptReason.QUOTA)]
    d = schedule([], [j], [node("a", gpus=1)], tenants, usage, NOW, Policy(quota_requeue_running=False))
    assert d.preemptions == []


def test_room_being_made_is_not_backfilled_by_lower_classes():
    victim = training("v", 0, NOW - 3600)
    free_neighbour = node("a", gpus=2, nvlink_size=2)
    urgent = job("urgent", gpus=2, job_class=JobClass.URGENT_INFERENCE, submitted_at=NOW)
    filler = job("filler", job_class=JobClass.INFERENCE, submitted_at=NOW - 10)
    d = schedule([urgent, filler], [victim], [free_neighbour], {}, {}, NOW)
    assert [p.job_id for p in d.preemptions] == ["v"]
    assert d.starts == []
    victim.state = JobState.PREEMPTING
    victim.preempt_reason = PreemptReason.PRIORITY
    victim.preempt_deadline = NOW + 60
    d = schedule([urgent, filler], [victim], [free_neighbour], {}, {}, NOW + 1)
    assert d.starts == [] and d.preemptions == []
    other_urgent = job("other", job_class=JobClass.URGENT_INFERENCE, submitted_at=NOW)
    d = schedule([other_urgent], [victim], [free_neighbour], {}, {}, NOW + 1)
    assert [s.job_id for s in d.starts] == ["other"]
