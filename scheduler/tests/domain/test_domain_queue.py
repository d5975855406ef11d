"""Queue order: classes, FIFO among equals, fair-share between tenants, baselines."""

from __future__ import annotations

from domain_factories import GIB, job, node, running

from gpunas_scheduler.domain import schedule
from gpunas_scheduler.domain.model import Allocation, GpuMode, GpuSlice, JobClass, Policy, Tenant, TenantUsage

NOW = 1_800_000_000.0


def started(pending, nodes, tenants=None, usage=None, policy=None, running_jobs=()):
    d = schedule(pending, running_jobs, nodes, tenants or {}, usage or {}, NOW, policy)
    return [s.job_id for s in d.starts]


def test_higher_class_starts_first_regardless_of_submit_time():
    pending = [
        job("train", job_class=JobClass.TRAINING, submitted_at=1),
        job("tune", job_class=JobClass.FINE_TUNING, submitted_at=2),
        job("urgent", job_class=JobClass.URGENT_INFERENCE, submitted_at=3),
    ]
    assert started(pending, [node("a", gpus=1)]) == ["urgent"]


def test_fifo_inside_a_class_and_tenant():
    pending = [job(f"j{i}", submitted_at=10 - i) for i in range(5)]
    assert started(pending, [node("a", gpus=2, nvlink_size=None)]) == ["j4", "j3"]


def test_tenant_below_its_share_goes_first():
    usage = {"suwon": TenantUsage("suwon", NOW, decayed_gpu_seconds=100 * 3600.0)}
    pending = [job("s1", tenant="suwon", submitted_at=1), job("y1", tenant="yongin", submitted_at=2)]
    assert started(pending, [node("a", gpus=1)], usage=usage) == ["y1"]


def test_weight_scales_the_share():
    usage = {
        "suwon": TenantUsage("suwon", NOW, decayed_gpu_seconds=300.0),
        "yongin": TenantUsage("yongin", NOW, decayed_gpu_seconds=200.0),
    }
    tenants = {"suwon": Tenant("suwon", weight=2.0), "yongin": Tenant("yongin", weight=1.0)}
    pending = [job("y1", tenant="yongin", submitted_at=1), job("s1", tenant="suwon", submitted_at=2)]
    assert started(pending, [node("a", gpus=1)], tenants=tenants, usage=usage) == ["s1"]


def test_tenants_interleave_within_one_pass():
    pending = [job(f"s{i}", tenant="suwon", submitted_at=i) for i in range(4)]
    pending += [job(f"y{i}", tenant="yongin", submitted_at=10 + i) for i in range(4)]
    order = started(pending, [node("a", gpus=4, nvlink_size=None)])
    assert sorted(order) == ["s0", "s1", "y0", "y1"]


def test_running_gpus_count_against_the_tenant():
    busy = running(job("r", tenant="suwon"), Allocation("a", (GpuSlice(0, 80 * GIB),), 1000, 1024), NOW - 60)
    pending = [job("s1", tenant="suwon", submitted_at=1), job("y1", tenant="yongin", submitted_at=2)]
    assert started(pending, [node("a", gpus=2, nvlink_size=None)], running_jobs=[busy]) == ["y1"]


def test_backfill_starts_smaller_jobs_behind_a_blocked_one():
    pending = [job("big", gpus=8, submitted_at=1), job("small", gpus=1, submitted_at=2)]
    assert started(pending, [node("a", gpus=4, nvlink_size=4)]) == ["small"]


def test_fifo_baseline_blocks_behind_the_head():
    pending = [job("big", gpus=8, submitted_at=1), job("small", gpus=1, submitted_at=2)]
    assert started(pending, [node("a", gpus=4, nvlink_size=4)], policy=Policy.fifo()) == []
    assert started(pending, [node("a", gpus=4, nvlink_size=4)], policy=Policy.best_fit()) == ["small"]


def test_fifo_baselines_ignore_classes():
    pending = [job("train", submitted_at=1), job("urgent", job_class=JobClass.URGENT_INFERENCE, submitted_at=2)]
    assert started(pending, [node("a", gpus=1)], policy=Policy.best_fit()) == ["train"]


def test_only_pending_jobs_are_considered():
    done = job("done", submitted_at=0)
    done.state = done.state.SUCCEEDED
    assert started([done, job("j", submitted_at=1)], [node("a", gpus=1)]) == ["j"]


def test_a_failed_request_does_not_hide_a_smaller_one():
    shared = node("s", gpus=1, memory_gib=24, mode=GpuMode.SHARED, nvlink_size=None)
    filler = running(
        job("filler", job_class=2, gpu_share_milli=100, gpu_memory_mib=20 * GIB),
        Allocation("s", (GpuSlice(0, 20 * GIB, 100),), 1000, 1024),
        NOW - 5,
    )
    pending = [
        job("proportional", job_class=2, gpu_share_milli=300, submitted_at=1),
        job("explicit", job_class=2, gpu_share_milli=500, gpu_memory_mib=2 * GIB, submitted_at=2),
        job("bigger", job_class=2, gpu_share_milli=950, gpu_memory_mib=2 * GIB, submitted_at=3),
    ]
    assert started(pending, [shared], running_jobs=[filler]) == ["explicit"]
