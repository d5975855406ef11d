"""Backfill reservations: the first blocked job of a pool gets a hold that only jobs ending
before it may use (or, with preemption on, jobs it may preempt: test_domain_opportunistic.py), so a
large job is not starved by a stream of small ones. ``STRICT`` turns preemption off, and with it
opportunistic starts, to test the hold itself."""

from __future__ import annotations

from dataclasses import replace

from domain_factories import GIB, job, node, running

from gpunas_scheduler.domain import ClusterState, plan, schedule
from gpunas_scheduler.domain.model import Allocation, GpuMode, GpuSlice, JobClass, JobState, Policy, PreemptReason

NOW = 1_800_000_000.0
DAY = 86_400.0
STRICT = Policy(preemption=False)


def busy(job_id: str, gpu: int, started: float, node_name: str = "a", **kw: object) -> object:
    alloc = Allocation(node_name, (GpuSlice(gpu, 80 * GIB),), 1000, 1024)
    return running(job(job_id, **kw), alloc, started)


def half_busy_node_a() -> list[object]:
    """Training jobs on GPUs 0-3 of node a: the last one reaches the 24 h limit at NOW + 4 h."""
    return [busy(f"r{g}", g, NOW - DAY + (g + 1) * 3600.0) for g in range(4)]


def started(pending, nodes, running_jobs, policy=None):
    d = schedule(pending, running_jobs, nodes, {}, {}, NOW, policy)
    return {s.job_id: s.allocation.node for s in d.starts}


def test_small_jobs_that_outlast_the_hold_backfill_elsewhere_only():
    pending = [job("big", gpus=8, submitted_at=1)] + [job(f"s{i}", submitted_at=2 + i) for i in range(6)]
    nodes = [node("a"), node("b", gpus=4, nvlink_size=4)]
    got = started(pending, nodes, half_busy_node_a(), STRICT)
    # big holds node a's GPUs from NOW + 4 h (+ grace); 24 h training jobs would still run then.
    assert got == {"s0": "b", "s1": "b", "s2": "b", "s3": "b"}


def test_without_reservations_small_jobs_take_the_free_gpus_of_the_big_jobs_node():
    pending = [job("big", gpus=8, submitted_at=1)] + [job(f"s{i}", submitted_at=2 + i) for i in range(6)]
    nodes = [node("a"), node("b", gpus=4, nvlink_size=4)]
    got = started(pending, nodes, half_busy_node_a(), Policy(reservation_searches=0))
    assert sorted(got) == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert list(got.values()).count("a") == 4


def test_jobs_that_end_before_the_hold_starts_use_its_gpus():
    pending = [
        job("big", gpus=8, submitted_at=1),
        job("long", submitted_at=2),
        job("short", submitted_at=3, max_runtime_s=3600.0),
    ]
    assert started(pending, [node("a")], half_busy_node_a(), STRICT) == {"short": "a"}


def test_the_hold_goes_where_the_job_can_start_soonest():
    running_jobs = half_busy_node_a() + [busy(f"q{g}", g, NOW - 3600.0, node_name="b") for g in range(4)]
    state = ClusterState([node("a"), node("b")], running_jobs, Policy())
    plan(state, [job("big", gpus=8, submitted_at=1)], {}, {}, NOW)
    (hold,) = state.holds.values()
    assert (hold.job_id, hold.node, hold.gpus) == ("big", "a", frozenset(range(8)))
    assert hold.until == NOW + 4 * 3600.0 + 60.0


def test_no_hold_when_a_job_in_the_way_has_no_run_time_bound():
    running_jobs = [busy(f"i{g}", g, NOW - 3600.0, job_class=JobClass.INFERENCE) for g in range(4)]
    pending = [job("big", gpus=8, submitted_at=1), job("small", submitted_at=2)]
    assert started(pending, [node("a")], running_jobs) == {"small": "a"}


def test_host_memory_needed_at_the_hold_is_kept_from_longer_jobs():
    # At the hold all 1,024 GiB of node memory are free again and big needs 600: 424 GiB are spare.
    running_jobs = half_busy_node_a()
    for r in running_jobs:
        r.allocation = Allocation("a", r.allocation.slices, 1000, 10 * GIB)
    big = job("big", gpus=8, submitted_at=1)
    fat = job("fat", gpus=0, submitted_at=2)
    thin = job("thin", gpus=0, submitted_at=3)
    big.request = replace(big.request, memory_mib=600 * GIB)
    fat.request = replace(fat.request, memory_mib=450 * GIB)
    assert started([big, fat, thin], [node("a")], running_jobs, STRICT) == {"thin": "a"}
    fat.request = replace(fat.request, memory_mib=420 * GIB)
    assert started([big, fat, thin], [node("a")], running_jobs, STRICT) == {"fat": "a", "thin": "a"}


def test_share_pool_holds_one_gpu():
    shared = node("s", gpus=2, mode=GpuMode.SHARED, nvlink_size=None)
    running_jobs = [
        running(
            job(f"h{g}", job_class=JobClass.FINE_TUNING, max_runtime_s=1800.0, gpu_share_milli=800),
            Allocation("s", (GpuSlice(g, 64 * GIB, 800),), 1000, 1024),
            NOW - 600.0 * (g + 1),
        )
        for g in range(2)
    ]
    pending = [
        job("wide", job_class=JobClass.FINE_TUNING, gpu_share_milli=500, submitted_at=1),
        job("narrow", job_class=JobClass.FINE_TUNING, gpu_share_milli=200, submitted_at=2),
        job("narrow2", job_class=JobClass.FINE_TUNING, gpu_share_milli=200, submitted_at=3),
    ]
    # GPU 1's job ends first, so wide holds GPU 1 and the narrow jobs share GPU 0 only.
    got = started(pending, [shared], running_jobs, STRICT)
    assert got == {"narrow": "s"}


def test_baseline_best_fit_makes_no_reservations():
    state = ClusterState([node("a")], half_busy_node_a(), Policy.best_fit())
    plan(state, [job("big", gpus=8, submitted_at=1)], {}, {}, NOW)
    assert state.holds == {}


def test_a_job_leaving_after_its_checkpoint_ends_at_its_deadline():
    leaving = [busy(f"r{g}", g, NOW - 3600.0) for g in range(4)]
    for r in leaving:
        r.state, r.preempt_deadline, r.preempt_reason = JobState.PREEMPTING, NOW + 120.0, PreemptReason.MAX_RUNTIME
    state = ClusterState([node("a")], leaving, Policy())
    plan(state, [job("big", gpus=8, submitted_at=1)], {}, {}, NOW)
    assert state.holds["a"].until == NOW + 120.0


def test_a_job_that_outlasts_a_hold_may_not_preempt_on_its_node():
    # big (urgent, 8 GPUs) cannot preempt: seven of the training jobs are within their minimum run
    # time. It holds the node; the later urgent job may not preempt the eighth there.
    running_jobs = [busy(f"r{g}", g, NOW - 60.0, min_runtime_s=3600.0) for g in range(7)]
    running_jobs.append(busy("r7", 7, NOW - 7200.0))
    pending = [
        job("big", job_class=JobClass.URGENT_INFERENCE, gpus=8, submitted_at=1),
        job("small", job_class=JobClass.URGENT_INFERENCE, submitted_at=2),
    ]
    d = schedule(pending, running_jobs, [node("a")], {}, {}, NOW, Policy())
    assert (d.starts, d.preemptions) == ([], [])
    d = schedule(pending, running_jobs, [node("a")], {}, {}, NOW, Policy(reservation_searches=0))
    assert [(x.job_id, x.for_job) for x in d.preemptions] == [("r7", "small")]
