"""Property-based invariants of the scheduling pass (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from gpunas_scheduler.domain import ClusterState, plan, schedule
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
    Policy,
    Pool,
    PreemptReason,
    Quotas,
    ResourceRequest,
    Tenant,
    TenantUsage,
    VgpuProfile,
)

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()
TENANTS = ("suwon", "seongnam", "yongin")
MIG_PROFILES = (("1g.10gb", 10240), ("3g.40gb", 40960))


@st.composite
def gpus(draw: st.DrawFn, index: int) -> Gpu:
    mode = draw(st.sampled_from([GpuMode.WHOLE, GpuMode.SHARED, GpuMode.SHARED, GpuMode.MIG, GpuMode.VGPU]))
    memory = draw(st.sampled_from([16384, 24576, 81920]))
    util = draw(st.sampled_from([0.0, 0.3, 0.9]))
    if mode is GpuMode.MIG:
        layout = draw(st.lists(st.sampled_from(MIG_PROFILES), min_size=1, max_size=3))
        while sum(m for _, m in layout) > memory:
            layout.pop()
        inst = tuple(MigInstance(f"g{index}-{i}", p, m) for i, (p, m) in enumerate(layout))
        return Gpu(index, memory, mode, utilization=util, mig_instances=inst)
    if mode is GpuMode.VGPU:
        profile = VgpuProfile("8Q", 8192, memory // 8192)
        return Gpu(index, memory, mode, utilization=util, vgpu_profile=profile)
    group = draw(st.sampled_from([None, index // 2, 0]))
    return Gpu(index, memory, mode, nvlink_group=group, utilization=util)


@st.composite
def nodes(draw: st.DrawFn) -> list[Node]:
    count = draw(st.integers(1, 3))
    result = []
    for n in range(count):
        k = draw(st.integers(0, 4))
        gs = tuple(draw(gpus(i)) for i in range(k))
        result.append(
            Node(
                f"n{n}",
                draw(st.sampled_from([2000, 16000])),
                draw(st.sampled_from([4096, 65536])),
                gs,
                drained=draw(st.booleans()) and n > 0,
            )
        )
    return result


@st.composite
def requests(draw: st.DrawFn) -> ResourceRequest:
    kind = draw(st.sampled_from(["whole", "share", "share", "mig", "vgpu", "cpu"]))
    cpu = draw(st.sampled_from([500, 2000, 8000]))
    mem = draw(st.sampled_from([512, 4096, 32768]))
    if kind == "whole":
        return ResourceRequest(
            gpus=draw(st.integers(1, 4)),
            gpu_memory_mib=draw(st.sampled_from([None, 16384, 40000])),
            cpu_milli=cpu,
            memory_mib=mem,
        )
    if kind == "share":
        return ResourceRequest(
            gpus=1,
            gpu_share_milli=draw(st.integers(1, 999)),
            gpu_memory_mib=draw(st.sampled_from([None, 4096, 12288])),
            cpu_milli=cpu,
            memory_mib=mem,
        )
    if kind == "mig":
        return ResourceRequest(
            gpus=1, mig_profile=draw(st.sampled_from([p for p, _ in MIG_PROFILES])), cpu_milli=cpu, memory_mib=mem
        )
    if kind == "vgpu":
        return ResourceRequest(gpus=1, vgpu_profile="8Q", cpu_milli=cpu, memory_mib=mem)
    return ResourceRequest(gpus=0, cpu_milli=cpu, memory_mib=mem)


@st.composite
def jobs(draw: st.DrawFn, prefix: str = "j") -> list[Job]:
    count = draw(st.integers(0, 25))
    return [
        Job(
            f"{prefix}{i}",
            draw(st.sampled_from(TENANTS)),
            "u",
            draw(st.sampled_from(list(JobClass))),
            draw(requests()),
            float(draw(st.integers(0, 1000))),
            service=draw(st.sampled_from([None, None, "svc"])),
        )
        for i in range(count)
    ]


POLICIES = st.sampled_from(
    [Policy(), Policy(shares_on_whole_gpus=True), Policy(strict_nvlink=False), Policy.fifo(), Policy.best_fit()]
)


def check_no_overcommit(cluster: list[Node], running: list[Job], policy: Policy) -> None:
    by_name = {n.name: n for n in cluster}
    cpu: dict[str, int] = {}
    mem: dict[str, int] = {}
    gpu_mem: dict[tuple[str, int], int] = {}
    share: dict[tuple[str, int], int] = {}
    mig_used: set[tuple[str, str]] = set()
    vgpu_used: set[tuple[str, int, int]] = set()
    services: set[tuple[str, str]] = set()
    for job in running:
        alloc = job.allocation
        assert alloc is not None
        node = by_name[alloc.node]
        cpu[node.name] = cpu.get(node.name, 0) + alloc.cpu_milli
        mem[node.name] = mem.get(node.name, 0) + alloc.memory_mib
        if job.service is not None:
            assert (node.name, job.service) not in services, "replicas of one service share a node"
            services.add((node.name, job.service))
        groups = set()
        for sl in alloc.slices:
            gpu = node.gpus[sl.gpu]
            key = (node.name, sl.gpu)
            gpu_mem[key] = gpu_mem.get(key, 0) + sl.memory_mib
            share[key] = share.get(key, 0) + sl.share_milli
            if sl.mig_instance is not None:
                assert (node.name, sl.mig_instance) not in mig_used
                mig_used.add((node.name, sl.mig_instance))
                assert gpu.mode is GpuMode.MIG
            if sl.vgpu_slot is not None:
                assert (node.name, sl.gpu, sl.vgpu_slot) not in vgpu_used
                vgpu_used.add((node.name, sl.gpu, sl.vgpu_slot))
                assert gpu.mode is GpuMode.VGPU
            groups.add(gpu.nvlink_group)
            if job.request.gpu_memory_mib is not None:
                assert gpu.memory_mib >= job.request.gpu_memory_mib
        if len(alloc.slices) > 1 and policy.strict_nvlink:
            assert len(groups) == 1 and None not in groups, "multi-GPU job outside one NVLink group"
        assert len(alloc.slices) == (
            job.request.gpus if job.request.pool.value == "whole" else min(1, job.request.gpus)
        )
    for name, used in cpu.items():
        assert used <= by_name[name].cpu_milli * policy.cpu_overcommit
    for name, used in mem.items():
        assert used <= by_name[name].memory_mib
    for (name, idx), used in gpu_mem.items():
        assert used <= by_name[name].gpus[idx].memory_mib, "GPU memory overcommitted"
        assert share[(name, idx)] <= 1000


def apply(pending: list[Job], running: list[Job], decisions, now: float) -> tuple[list[Job], list[Job]]:
    starts = {s.job_id: s.allocation for s in decisions.starts}
    still = []
    for job in pending:
        if job.id in starts:
            job.state = JobState.RUNNING
            job.allocation = starts[job.id]
            job.started_at = now
            running.append(job)
        else:
            still.append(job)
    return still, running


@settings(max_examples=150, deadline=None)
@given(cluster=nodes(), pending=jobs(), policy=POLICIES)
def test_no_overcommit_over_several_passes(cluster, pending, policy):
    running: list[Job] = []
    for step in range(3):
        now = NOW + step
        decisions = schedule(pending, running, cluster, {}, {}, now, policy)
        for s in decisions.starts:
            node = next(n for n in cluster if n.name == s.allocation.node)
            assert node.schedulable, "work placed on a drained node"
            for sl in s.allocation.slices:
                assert node.gpus[sl.gpu].utilization < policy.max_utilization
        pending, running = apply(pending, running, decisions, now)
        check_no_overcommit(cluster, running, policy)


@settings(max_examples=100, deadline=None)
@given(cluster=nodes(), pending=jobs(), data=st.data())
def test_no_start_for_a_tenant_at_its_gpu_quota(cluster, pending, data):
    over = data.draw(st.sampled_from(TENANTS))
    tenants = {t: Tenant(t, quotas=Quotas(gpu_hours_per_month=10)) for t in TENANTS}
    usage = {over: TenantUsage(over, NOW, month="2026-11", month_gpu_seconds=data.draw(st.floats(10 * 3600, 1e7)))}
    decisions = schedule(pending, [], cluster, tenants, usage, NOW)
    started = {s.job_id for s in decisions.starts}
    assert not any(j.tenant == over for j in pending if j.id in started)
    assert {j.id for j in pending if j.tenant == over} == set(decisions.quota_held)


@settings(max_examples=100, deadline=None)
@given(pending=jobs(), gpus_free=st.integers(0, 12))
def test_class_then_fifo_order_for_equal_requests(pending, gpus_free):
    cluster = [Node("n", 10**6, 10**7, tuple(Gpu(i, 81920) for i in range(gpus_free)))]
    same = ResourceRequest(gpus=1, cpu_milli=1, memory_mib=1)
    for j in pending:
        j.request = same
        j.service = None
        j.tenant = "suwon"
    decisions = schedule(pending, [], cluster, {}, {}, NOW)
    started = {s.job_id for s in decisions.starts}
    assert len(started) == min(gpus_free, len(pending))
    key = {j.id: (j.job_class, j.submitted_at, j.id) for j in pending}
    if started and len(started) < len(pending):
        assert max(key[i] for i in started) < min(key[j.id] for j in pending if j.id not in started)


@settings(max_examples=100, deadline=None)
@given(
    victims=st.lists(
        st.tuples(
            st.sampled_from([JobClass.FINE_TUNING, JobClass.TRAINING]), st.integers(0, 7200), st.integers(0, 600)
        ),
        min_size=1,
        max_size=8,
    )
)
def test_preemption_victims_lose_least_work_and_respect_min_runtime(victims):
    cluster = [Node("n", 10**6, 10**7, tuple(Gpu(i, 81920) for i in range(len(victims))))]
    running = []
    for i, (cls, age, min_rt) in enumerate(victims):
        j = Job(
            f"v{i}",
            "suwon",
            "u",
            cls,
            ResourceRequest(gpus=1, cpu_milli=1, memory_mib=1),
            0.0,
            min_runtime_s=float(min_rt),
        )
        j.state = JobState.RUNNING
        j.started_at = NOW - age
        j.allocation = Allocation("n", (GpuSlice(i, 81920),), 1, 1)
        running.append(j)
    urgent = Job(
        "u", "seongnam", "u", JobClass.URGENT_INFERENCE, ResourceRequest(gpus=1, cpu_milli=1, memory_mib=1), NOW
    )
    decisions = schedule([urgent], running, cluster, {}, {}, NOW)
    eligible = [j for j in running if NOW - (j.started_at or NOW) >= j.min_runtime_s]
    if not eligible:
        assert decisions.preemptions == []
        return
    assert len(decisions.preemptions) == 1
    p = decisions.preemptions[0]
    assert p.reason is PreemptReason.PRIORITY and p.for_job == "u"
    chosen = next(j for j in running if j.id == p.job_id)
    assert chosen in eligible
    assert chosen.work_at_risk_s(NOW) == min(j.work_at_risk_s(NOW) for j in eligible)


@st.composite
def contended(draw: st.DrawFn) -> tuple[list[Node], list[Job], list[Job]]:
    """Nodes of whole GPUs in NVLink groups and shared GPUs, a first wave of jobs with run-time
    limits that fills them, and a second wave of large and small jobs with and without limits."""
    cluster = []
    for n in range(draw(st.integers(1, 3))):
        size = draw(st.sampled_from([2, 4, 8]))
        gs = [Gpu(i, 81920, nvlink_group=i // size) for i in range(8)]
        gs += [Gpu(8 + i, 81920, GpuMode.SHARED) for i in range(draw(st.integers(0, 2)))]
        cluster.append(Node(f"n{n}", 16000, draw(st.sampled_from([65536, 262144])), tuple(gs)))

    def wave(prefix: str, count: int, max_gpus: int, limits: list[float | None]) -> list[Job]:
        result = []
        for i in range(count):
            if draw(st.booleans()):
                req = ResourceRequest(
                    gpus=draw(st.integers(1, max_gpus)), cpu_milli=draw(st.sampled_from([500, 4000])), memory_mib=8192
                )
            else:
                req = ResourceRequest(gpus=1, gpu_share_milli=draw(st.integers(100, 900)), memory_mib=4096)
            j = Job(
                f"{prefix}{i}",
                draw(st.sampled_from(TENANTS)),
                "u",
                draw(st.sampled_from(list(JobClass))),
                req,
                float(i),
                max_runtime_s=draw(st.sampled_from(limits)),
                service=draw(st.sampled_from([None, None, None, "svc"])),
            )
            result.append(j)
        return result

    first = wave("r", draw(st.integers(4, 24)), 2, [600.0, 3600.0, 7200.0])
    later = wave("p", draw(st.integers(1, 20)), 8, [None, 600.0, 3600.0, 90000.0])
    return cluster, first, later


@settings(max_examples=200, deadline=None)
@given(setup=contended(), policy=st.sampled_from([Policy(), Policy(shares_on_whole_gpus=True)]))
def test_a_hold_is_free_for_its_job_when_it_starts(setup, policy):
    """Whatever a pass starts after making a hold, the held job fits on the hold's node once the
    jobs there that end by the hold's start (by their run-time bound) have gone; no job that may
    still run then is on the whole GPUs held."""
    cluster, first, later = setup
    pending, running = apply(first, [], schedule(first, [], cluster, {}, {}, NOW, policy), NOW)
    state = ClusterState(cluster, running, policy)
    now = NOW + 300.0
    queue = pending + later
    decisions = plan(state, queue, {}, {}, now)
    check_no_overcommit(cluster, apply(queue, list(running), decisions, now)[1], policy)
    holds = dict(state.holds)
    state.clear_holds()
    started = {s.job_id for s in decisions.starts}
    for hold in holds.values():
        held = next(j for j in queue if j.id == hold.job_id)
        assert held.id not in started
        ns = state.nodes[hold.node]
        gone = [j for j in ns.jobs.values() if state.ends[j.id] <= hold.until]
        assert state.fits_after_release(held, ns, gone), f"hold for {held.id} on {hold.node} was taken"
        if held.request.pool is Pool.WHOLE:  # held whole GPUs are ones that are free by then
            for j in ns.jobs.values():
                if state.ends[j.id] > hold.until:
                    assert not set(state.allocations[j.id].gpu_indices) & hold.gpus, f"{j.id} took a held GPU"
