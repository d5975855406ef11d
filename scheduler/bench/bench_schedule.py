"""One scheduling pass over 10,000 pending jobs on 1,000 GPUs (125 nodes x 8).

Targets (issue 6): a pass <= 50 ms and >= 10,000 placement decisions per second. Prints medians
over repeated passes for two cluster states (empty, and half-allocated by running jobs) and, as a
baseline run in the same process, the same pass with a naive placer that scans every GPU of every
node for each job (what the indexed ClusterState replaces).

    .venv/bin/python bench/bench_schedule.py [--repeat 15] [--pending 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from gpunas_scheduler.domain import ClusterState, plan, schedule
from gpunas_scheduler.domain.model import (
    Allocation,
    Gpu,
    GpuMode,
    GpuSlice,
    Job,
    JobClass,
    JobState,
    Node,
    Policy,
    ResourceRequest,
    Tenant,
    TenantUsage,
)

NOW = 1_795_000_000.0
TENANTS = ("suwon", "seongnam", "yongin")


def cluster() -> list[Node]:
    nodes = []
    for n in range(125):
        mode = GpuMode.SHARED if n % 5 == 0 else GpuMode.WHOLE
        gpus = tuple(
            Gpu(
                i,
                81920,
                mode,
                nvlink_group=None if mode is GpuMode.SHARED else i // 4,
                utilization=(n * 8 + i) % 7 / 10,
            )
            for i in range(8)
        )
        nodes.append(Node(f"gpu-{n:03d}", 128_000, 1_048_576, gpus))
    return nodes


def workload(count: int, rng: random.Random) -> list[Job]:
    jobs = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.45:
            cls = rng.choice([JobClass.FINE_TUNING, JobClass.TRAINING])
            req = ResourceRequest(gpus=rng.choice([1, 1, 1, 2, 4, 8]), cpu_milli=8000, memory_mib=65536)
        else:
            cls = rng.choice([JobClass.URGENT_INFERENCE, JobClass.INFERENCE, JobClass.INFERENCE])
            req = ResourceRequest(
                gpus=1,
                gpu_share_milli=rng.choice([100, 250, 500]),
                gpu_memory_mib=rng.choice([8192, 16384, 20480]),
                cpu_milli=2000,
                memory_mib=8192,
            )
        jobs.append(Job(f"job-{i:06d}", rng.choice(TENANTS), "user", cls, req, NOW - count + i))
    return jobs


def half_full(nodes: list[Node], rng: random.Random) -> list[Job]:
    """Running jobs on every other whole-GPU node and a quarter of each shared GPU."""
    running = []
    for n, node in enumerate(nodes):
        if node.gpus[0].mode is GpuMode.WHOLE and n % 2 == 0:
            for g in range(8):
                req = ResourceRequest(gpus=1, cpu_milli=8000, memory_mib=65536)
                alloc = Allocation(node.name, (GpuSlice(g, 81920),), 8000, 65536)
                running.append(_running(f"run-{node.name}-{g}", req, alloc, rng))
        elif node.gpus[0].mode is GpuMode.SHARED:
            for g in range(8):
                req = ResourceRequest(
                    gpus=1, gpu_share_milli=250, gpu_memory_mib=20480, cpu_milli=2000, memory_mib=8192
                )
                alloc = Allocation(node.name, (GpuSlice(g, 20480, 250),), 2000, 8192)
                running.append(_running(f"run-{node.name}-{g}", req, alloc, rng))
    return running


def _running(job_id: str, req: ResourceRequest, alloc: Allocation, rng: random.Random) -> Job:
    cls = JobClass.INFERENCE if req.gpu_share_milli else JobClass.TRAINING
    job = Job(job_id, rng.choice(TENANTS), "user", cls, req, NOW - 7200, state=JobState.RUNNING)
    job.allocation = alloc
    job.started_at = NOW - 3600
    return job


def naive_pass(pending: list[Job], running: list[Job], nodes: list[Node], policy: Policy) -> int:
    """Baseline placer: same queue order, but every job scans every GPU of every node."""
    state = ClusterState(nodes, running, policy)
    starts = 0
    order = sorted(pending, key=lambda j: (j.job_class, j.submitted_at, j.id))
    for job in order:
        req = job.request
        for ns in state.nodes.values():
            if ns.free_cpu < req.cpu_milli or ns.free_memory < req.memory_mib:
                continue
            slices = []
            for gs in ns.gpus.values():
                if req.gpu_share_milli is not None:
                    mem = req.gpu_memory_mib or 0
                    if gs.gpu.mode is GpuMode.SHARED and gs.free_share >= req.gpu_share_milli and gs.free_memory >= mem:
                        slices = [GpuSlice(gs.gpu.index, mem, req.gpu_share_milli)]
                        break
                elif gs.gpu.mode is GpuMode.WHOLE and gs.whole_free and gs.usable:
                    slices.append(GpuSlice(gs.gpu.index, gs.gpu.memory_mib))
                    if len(slices) == req.gpus:
                        break
            wanted = 1 if req.gpu_share_milli is not None else req.gpus
            if len(slices) == wanted:
                state.allocate(job, Allocation(ns.node.name, tuple(slices), req.cpu_milli, req.memory_mib), NOW)
                starts += 1
                break
    return starts


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall time and median CPU time of ``repeat`` calls, and the last result.

    The CPU time of this single-threaded pass is what it costs on an idle core; the wall time also
    counts waiting for a core on a busy machine. Both are printed; targets are judged on CPU time.
    """
    walls = []
    cpus = []
    result = None
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--pending", type=int, default=10_000)
    args = ap.parse_args()
    rng = random.Random(6)
    nodes = cluster()
    pending = workload(args.pending, rng)
    tenants = {t: Tenant(t) for t in TENANTS}
    usage = {t: TenantUsage(t, NOW, decayed_gpu_seconds=1000.0 * (i + 1)) for i, t in enumerate(TENANTS)}
    policy = Policy()
    print(f"cluster: {len(nodes)} nodes, {sum(len(n.gpus) for n in nodes)} GPUs; pending jobs: {len(pending)}")
    for label, running in (("empty cluster", []), ("half-allocated cluster", half_full(nodes, rng))):
        wall, cpu, decisions = timed(
            lambda r=running: schedule(pending, r, nodes, tenants, usage, NOW, policy), args.repeat
        )
        _, build, _ = timed(lambda r=running: ClusterState(nodes, r, policy), args.repeat)
        starts = len(decisions.starts)
        _, naive, naive_starts = timed(
            lambda r=running: naive_pass(pending, r, nodes, policy), max(3, args.repeat // 3)
        )
        print(f"\n{label}: {len(running)} running jobs")
        print(f"  pass, median CPU time of {args.repeat}:  {cpu * 1000:8.1f} ms   target <= 50 ms")
        print(f"  pass, median wall time:          {wall * 1000:8.1f} ms   (machine load included)")
        print(f"    of which state build (CPU):    {build * 1000:8.1f} ms")
        print(f"  jobs started in the pass:        {starts:8d}   (considered {decisions.considered})")
        print(f"  placement decisions per second:  {starts / cpu:8.0f}   target >= 10,000")
        print(f"  jobs considered per second:      {decisions.considered / cpu:8.0f}")
        print(
            f"  naive full-scan placer (CPU):    {naive * 1000:8.1f} ms   ({naive_starts} starts); "
            f"indexed pass is {naive / cpu:.1f}x faster"
        )
    _, plan_only, _ = timed(lambda: plan(ClusterState(nodes, [], policy), pending, tenants, usage, NOW), args.repeat)
    print(f"\nplan() on a fresh ClusterState (what the simulator calls), CPU: {plan_only * 1000:.1f} ms")
    print(f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
