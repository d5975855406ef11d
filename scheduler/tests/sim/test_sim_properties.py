"""Simulator invariants under random traces (hypothesis): no job is lost, the incremental cluster
state always equals a state rebuilt from scratch."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from gpunas_scheduler.domain import ClusterState
from gpunas_scheduler.domain.model import Gpu, GpuMode, JobClass, Node, Policy, ResourceRequest
from gpunas_scheduler.sim import SimParams, Simulator, Task, Trace

NODES = [
    Node("a", 32_000, 262_144, tuple(Gpu(i, 40960, nvlink_group=i // 2) for i in range(4))),
    Node("b", 32_000, 262_144, tuple(Gpu(i, 24576, GpuMode.SHARED) for i in range(2))),
]


@st.composite
def tasks(draw: st.DrawFn) -> list[Task]:
    result = []
    for i in range(draw(st.integers(1, 30))):
        if draw(st.booleans()):
            req = ResourceRequest(gpus=draw(st.sampled_from([1, 1, 2])), cpu_milli=2000, memory_mib=4096)
        else:
            req = ResourceRequest(gpus=1, gpu_share_milli=draw(st.integers(100, 900)), cpu_milli=1000, memory_mib=2048)
        result.append(
            Task(
                f"t{i:02d}",
                float(draw(st.integers(0, 5000))),
                float(draw(st.integers(1, 4000))),
                draw(st.sampled_from(["suwon", "seongnam", "yongin"])),
                draw(st.sampled_from(list(JobClass))),
                req,
                draw(st.sampled_from([None, None, "svc"])),
            )
        )
    return result


POLICIES = st.sampled_from(
    [
        Policy(shares_on_whole_gpus=True, preempt_max_class=JobClass.INFERENCE, max_runtime_s={JobClass.TRAINING: 900}),
        Policy(preempt_max_class=JobClass.INFERENCE),
        Policy(),
        Policy.fifo(),
        Policy.best_fit(),
    ]
)
PARAMS = st.sampled_from(
    [
        SimParams(),
        SimParams(checkpoint_write_s=200, checkpoint_grace_s=60, checkpoint_interval_s=300, min_runtime_s=0),
        SimParams(min_runtime_s=0, restore_s=0),
    ]
)


def run_checked(trace: Trace, policy: Policy, params: SimParams) -> Simulator:
    sim = Simulator(trace, policy, params)
    original = sim._pass

    def pass_and_compare(now: float) -> None:
        original(now)
        fresh = ClusterState(trace.nodes, [sim.runs[j].job for j in sim.state.running], policy)
        assert sim.state.reserved == fresh.reserved
        assert set(sim.state.preempting) == set(fresh.preempting)
        for ns in sim.state.nodes.values():
            other = fresh.nodes[ns.node.name]
            assert (ns.free_cpu, ns.free_memory) == (other.free_cpu, other.free_memory)
            for idx, gs in ns.gpus.items():
                og = other.gpus[idx]
                assert (gs.free_share, gs.free_memory, gs.share_key) == (og.free_share, og.free_memory, og.share_key)
        for probe in list(sim.pending.values())[:5]:
            assert sim.state.find(probe, holds=False) == fresh.find(probe)

    sim._pass = pass_and_compare  # type: ignore[method-assign]
    return sim


@settings(max_examples=60, deadline=None)
@given(trace_tasks=tasks(), policy=POLICIES, params=PARAMS)
def test_every_job_finishes_and_state_matches_a_rebuild(trace_tasks, policy, params):
    trace = Trace("random", NODES, trace_tasks, weights={"suwon": 2.0, "seongnam": 2.0, "yongin": 1.0})
    sim = run_checked(trace, dataclasses.replace(policy, shares_on_whole_gpus=policy.shares_on_whole_gpus), params)
    report = sim.run()
    if policy.backfill:
        assert report.unfinished == 0, "a job was lost"
    for run in sim.runs.values():
        if run.finished_at is not None:
            assert run.finished_at - run.job.submitted_at >= run.work - 1e-6
    # Backfill leaves GPUs idle while a job fits only where holds keep that job off them.
    assert report.idle_while_fit_gpu_h <= report.held_idle_gpu_h + 1e-9 or not policy.backfill
    assert not sim.state.running and sim.allocated_units < 1e-9


def test_preempted_jobs_come_back():
    urgent = [
        Task(
            f"u{i}",
            100.0 * i + 50,
            30.0,
            "seongnam",
            JobClass.URGENT_INFERENCE,
            ResourceRequest(gpus=1, cpu_milli=1000, memory_mib=1024),
        )
        for i in range(10)
    ]
    train = [
        Task(f"t{i}", 0.0, 2000.0, "suwon", JobClass.TRAINING, ResourceRequest(gpus=1, cpu_milli=1000, memory_mib=1024))
        for i in range(4)
    ]
    sim = Simulator(Trace("t", NODES[:1], urgent + train), Policy(), SimParams(min_runtime_s=0))
    report = sim.run()
    assert report.preemptions["priority"] >= 5
    assert report.unfinished == 0
    requeued = sum(r.job.attempts for r in sim.runs.values() if r.job.id.startswith("t"))
    assert requeued == report.preemptions["priority"]
