"""Simulator replays with hand-computed outcomes."""

from __future__ import annotations

import pytest

from gpunas_scheduler.domain.model import Gpu, JobClass, Node, Policy, ResourceRequest
from gpunas_scheduler.sim import SimParams, Simulator, Task, Trace, policy_named, simulate
from gpunas_scheduler.sim.metrics import jain_index, percentile


def cluster(gpus: int, nvlink: int = 8) -> list[Node]:
    return [Node("n0", 64_000, 262_144, tuple(Gpu(i, 81920, nvlink_group=i // nvlink) for i in range(gpus)))]


def task(
    tid: str, submit: float, duration: float, gpus: int = 1, cls: JobClass = JobClass.TRAINING, tenant: str = "suwon"
) -> Task:
    return Task(tid, submit, duration, tenant, cls, ResourceRequest(gpus=gpus, cpu_milli=1000, memory_mib=1024))


def test_queueing_on_one_gpu():
    trace = Trace("t", cluster(1), [task("a", 0, 100), task("b", 10, 50)])
    r = simulate(trace, policy_named("ours"))
    assert (r.finished, r.unfinished) == (2, 0)
    assert r.avg_jct_s == pytest.approx(120.0)
    assert r.p95_jct_s == pytest.approx(140.0)
    assert r.avg_wait_s_by_tenant == {"suwon": pytest.approx(45.0)}
    assert r.idle_while_fit_gpu_h == 0.0
    assert r.makespan_s == pytest.approx(150.0)


def test_preempted_job_checkpoints_resumes_and_finishes():
    trace = Trace("t", cluster(1), [task("train", 0, 10_000), task("urgent", 1000, 100, cls=JobClass.URGENT_INFERENCE)])
    r = simulate(trace, policy_named("ours"), SimParams(checkpoint_write_s=60, checkpoint_grace_s=120, restore_s=60))
    assert (r.finished, r.unfinished) == (2, 0)
    assert r.preemptions == {"priority": 1}
    # urgent: waits for the 60 s checkpoint write, runs 100 s; training resumes at 1160 after a 60 s restore.
    assert r.avg_jct_s == pytest.approx(((1160 - 1000) + (1160 + 60 + 9000)) / 2)
    # the GPU does no work while the checkpoint is written (60 s) nor while it is restored (60 s)
    assert r.lost_work_gpu_h == pytest.approx((60 + 60) / 3600)


def test_jobs_that_never_start_wait_until_the_end_of_the_run():
    tasks = [task("c", 0, 100), task("a", 1, 10, gpus=2), task("b", 2, 10)]
    r = simulate(Trace("t", cluster(1), tasks), policy_named("fifo"))
    assert (r.finished, r.unfinished, r.not_started) == (1, 2, 2)
    assert r.avg_wait_s_by_tenant == {"suwon": pytest.approx((0 + 99 + 98) / 3)}


def test_killed_at_deadline_falls_back_to_periodic_checkpoint():
    trace = Trace("t", cluster(1), [task("train", 0, 10_000), task("urgent", 1000, 100, cls=JobClass.URGENT_INFERENCE)])
    params = SimParams(checkpoint_write_s=200, checkpoint_grace_s=120, restore_s=60, checkpoint_interval_s=1800)
    r = simulate(trace, policy_named("ours"), params)
    assert (r.finished, r.unfinished) == (2, 0)
    # killed at 1120 with no periodic checkpoint yet: all 1120 s lost, plus 60 s restore.
    assert r.lost_work_gpu_h == pytest.approx((1120 + 60) / 3600)
    assert r.avg_jct_s == pytest.approx(((1220 - 1000) + (1220 + 60 + 10_000)) / 2)


def test_fifo_blocks_behind_the_head_and_counts_idle_while_fit():
    tasks = [task("a", 0, 100), task("b", 1, 10, gpus=2), task("c", 2, 10)]
    trace = Trace("t", cluster(2, nvlink=2), tasks)
    fifo = simulate(trace, policy_named("fifo"))
    best = simulate(trace, policy_named("best-fit"))
    assert fifo.idle_while_fit_gpu_h == pytest.approx(98 / 3600)
    assert fifo.avg_jct_s == pytest.approx((100 + 109 + 118) / 3)
    assert best.idle_while_fit_gpu_h == 0.0
    assert best.avg_jct_s == pytest.approx((100 + 109 + 10) / 3)
    # b never waits while two GPUs are free: no fragmentation
    assert best.fragmented_gpu_h == fifo.fragmented_gpu_h == 0.0


def test_fragmentation_counts_free_gpus_a_blocked_job_cannot_use():
    nodes = [
        Node(f"n{i}", 64_000, 262_144, (Gpu(0, 81920, nvlink_group=0), Gpu(1, 81920, nvlink_group=0))) for i in (0, 1)
    ]
    tasks = [task("a", 0, 100), task("b", 0, 10), task("c", 1, 100), task("d", 20, 10, gpus=2)]
    r = simulate(Trace("t", nodes, tasks), policy_named("best-fit"))
    # from 20 to 100 one GPU is free on each node and d (2 GPUs) cannot start
    assert r.fragmented_gpu_h == pytest.approx(2 * 80 / 3600)
    assert r.avg_jct_s == pytest.approx((100 + 10 + 100 + 90) / 4)


def test_training_longer_than_24_hours_is_requeued_and_still_finishes():
    day = 24 * 3600
    trace = Trace("t", cluster(1), [task("long", 0, 2 * day + 500)])
    r = simulate(trace, policy_named("ours"), SimParams(checkpoint_write_s=60, restore_s=60))
    assert r.preemptions == {"max_runtime": 2}
    assert (r.finished, r.unfinished) == (1, 0)
    assert r.avg_jct_s == pytest.approx(2 * day + 500 + 2 * (60 + 60))
    assert simulate(trace, policy_named("best-fit")).preemptions == {}


def test_jobs_that_never_fit_are_reported_unfinished():
    trace = Trace("t", cluster(1), [task("huge", 0, 10, gpus=2), task("ok", 1, 10)])
    assert (simulate(trace, Policy()).unfinished, simulate(trace, policy_named("fifo")).unfinished) == (1, 2)


def test_fair_share_interleaves_tenants():
    tasks = [task(f"s{i}", 0, 100, tenant="suwon") for i in range(4)] + [task("y0", 1, 100, tenant="yongin")]
    trace = Trace("t", cluster(1), tasks, weights={"suwon": 1.0, "yongin": 1.0})
    ours = simulate(trace, policy_named("ours"))
    fifo = simulate(trace, policy_named("best-fit"))
    assert ours.avg_wait_s_by_tenant["yongin"] < fifo.avg_wait_s_by_tenant["yongin"]


def test_jain_and_percentile():
    assert jain_index([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 0.0, 0.0]) == pytest.approx(1 / 3)
    assert jain_index([]) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0
    assert percentile([], 95) == 0.0


def test_a_large_job_is_not_starved_by_a_stream_of_small_ones():
    # Eight 1-GPU jobs fill the node, a new 1-GPU job arrives every 100 s and runs 1,500 s, and an
    # 8-GPU job of the same class arrives at t=50. The small jobs' 24 h bound outlasts its hold, so
    # they take the GPUs that free up only opportunistically: when the last of the first eight is
    # done (t=1,070), big preempts the seven on its GPUs and starts once they have checkpointed
    # (60 s). Only then (one GPU for 60 s) is a held GPU idle while a job that fits waits.
    first = [task(f"f{i}", 0, 1000 + 10 * i) for i in range(8)]
    stream = [task(f"s{i:03d}", 100 * i, 1500) for i in range(1, 200)]
    trace = Trace("t", cluster(8), [*first, task("big", 50, 600, gpus=8), *stream])
    ours = Simulator(trace, policy_named("ours"))
    best = Simulator(trace, policy_named("best-fit"))
    reports = [ours.run(), best.run()]
    assert [r.unfinished for r in reports] == [0, 0]
    assert ours.runs["big"].waited == pytest.approx(1070 + 60 - 50)
    assert best.runs["big"].waited > 19_900 - 50
    assert reports[0].preemptions == {"opportunistic": 7}
    assert reports[0].held_idle_gpu_h == pytest.approx(60 / 3600) == reports[0].idle_while_fit_gpu_h
    assert reports[1].held_idle_gpu_h == 0 == reports[1].idle_while_fit_gpu_h
