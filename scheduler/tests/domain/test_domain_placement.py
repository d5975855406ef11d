"""Placement rules: pools, memory fit, NVLink groups, anti-affinity, score tie-breaker."""

from __future__ import annotations

from domain_factories import GIB, job, mig_node, node, running, vgpu_node

from gpunas_scheduler.domain import schedule
from gpunas_scheduler.domain.model import Allocation, GpuMode, GpuSlice, JobState, Node, Policy

NOW = 1_800_000_000.0


def start_map(pending, nodes, running_jobs=(), policy=None):
    d = schedule(pending, running_jobs, nodes, {}, {}, NOW, policy)
    return {s.job_id: s.allocation for s in d.starts}


def test_multi_gpu_job_stays_in_one_nvlink_group():
    n = node("a", gpus=8, nvlink_size=4)
    busy = running(job("busy"), Allocation("a", (GpuSlice(0, 80 * GIB),), 1000, 1024), NOW - 10)
    starts = start_map([job("j", gpus=4)], [n], [busy])
    assert starts["j"].gpu_indices == (4, 5, 6, 7)


def test_multi_gpu_job_waits_when_no_group_has_room():
    n = node("a", gpus=8, nvlink_size=4)
    busy = [running(job(f"b{i}"), Allocation("a", (GpuSlice(i, 80 * GIB),), 1000, 1024), NOW - 10) for i in (0, 4)]
    assert start_map([job("j", gpus=4)], [n], busy) == {}


def test_gpus_without_nvlink_only_serve_multi_gpu_jobs_when_not_strict():
    n = node("a", gpus=4, nvlink_size=None)
    assert start_map([job("j", gpus=2)], [n]) == {}
    relaxed = Policy(strict_nvlink=False)
    assert start_map([job("j", gpus=2)], [n], policy=relaxed)["j"].node == "a"


def test_best_fit_group_keeps_large_groups_free():
    small = node("small", gpus=2, nvlink_size=2)
    big = node("big", gpus=8, nvlink_size=8)
    starts = start_map([job("one", gpus=1, submitted_at=1), job("eight", gpus=8, submitted_at=2)], [big, small])
    assert starts["one"].node == "small"
    assert starts["eight"].node == "big"


def test_score_breaks_ties_towards_idle_gpus():
    busy = node("busy", gpus=1, utilization=0.5)
    idle = node("idle", gpus=1, utilization=0.1)
    assert start_map([job("j")], [busy, idle])["j"].node == "idle"


def test_gpu_at_or_above_max_utilization_takes_no_work():
    hot = node("hot", gpus=1, utilization=0.85)
    assert start_map([job("j")], [hot]) == {}


def test_gpu_memory_is_never_overcommitted_for_shares():
    shared = node("s", gpus=1, memory_gib=24, mode=GpuMode.SHARED, nvlink_size=None)
    pending = [
        job("a", job_class=2, gpus=1, gpu_share_milli=300, gpu_memory_mib=16 * GIB, submitted_at=1),
        job("b", job_class=2, gpus=1, gpu_share_milli=300, gpu_memory_mib=16 * GIB, submitted_at=2),
        job("c", job_class=2, gpus=1, gpu_share_milli=300, gpu_memory_mib=8 * GIB, submitted_at=3),
    ]
    starts = start_map(pending, [shared])
    assert set(starts) == {"a", "c"}
    assert sum(a.slices[0].memory_mib for a in starts.values()) <= 24 * GIB


def test_shares_only_use_shared_gpus_unless_allowed():
    whole = node("w", gpus=1)
    share_job = job("s", job_class=2, gpu_share_milli=500)
    assert start_map([share_job], [whole]) == {}
    starts = start_map([share_job], [whole], policy=Policy(shares_on_whole_gpus=True))
    assert starts["s"].slices[0].share_milli == 500


def test_shares_pack_onto_the_fullest_gpu():
    shared = node("s", gpus=2, mode=GpuMode.SHARED, nvlink_size=None)
    first = running(
        job("first", job_class=2, gpu_share_milli=600),
        Allocation("s", (GpuSlice(1, 8 * GIB, 600),), 1000, 1024),
        NOW - 5,
    )
    starts = start_map([job("j", job_class=2, gpu_share_milli=400)], [shared], [first])
    assert starts["j"].slices[0].gpu == 1


def test_whole_gpu_jobs_do_not_take_partly_shared_gpus():
    n = node("a", gpus=1)
    shared = running(
        job("s", job_class=2, gpu_share_milli=100), Allocation("a", (GpuSlice(0, 1024, 100),), 1000, 1024), NOW
    )
    assert start_map([job("w")], [n], [shared], policy=Policy(shares_on_whole_gpus=True)) == {}


def test_mig_instance_of_requested_profile():
    n = mig_node("m", (("3g.40gb", 40 * GIB), ("1g.10gb", 10 * GIB)))
    starts = start_map([job("j", job_class=2, mig_profile="1g.10gb")], [n])
    assert starts["j"].slices[0].mig_instance == "m-g0-i1"
    assert start_map([job("k", job_class=2, mig_profile="7g.80gb")], [n]) == {}


def test_vgpu_slots_are_limited_by_profile():
    n = vgpu_node("v", profile_gib=8, slots=3)
    pending = [job(f"j{i}", job_class=2, vgpu_profile="8Q", submitted_at=i) for i in range(4)]
    starts = start_map(pending, [n])
    assert len(starts) == 3
    assert sorted(a.slices[0].vgpu_slot for a in starts.values()) == [0, 1, 2]


def test_service_replicas_go_to_different_nodes():
    nodes = [node("a", gpus=2), node("b", gpus=2)]
    pending = [job(f"r{i}", job_class=2, service="llm", submitted_at=i) for i in range(3)]
    starts = start_map(pending, nodes)
    assert sorted(a.node for a in starts.values()) == ["a", "b"]


def test_drained_node_gets_no_new_work():
    assert start_map([job("j")], [node("a", drained=True)]) == {}


def test_node_memory_limits_placement():
    small = Node("tiny", 4000, 512, node("x", gpus=1).gpus)
    assert start_map([job("j")], [small]) == {}


def test_cpu_may_be_overcommitted_two_to_one():
    n = Node("n", 1000, 64 * GIB, node("x", gpus=2, nvlink_size=None).gpus)
    starts = start_map([job("a", submitted_at=1), job("b", submitted_at=2)], [n])
    assert set(starts) == {"a", "b"}
    assert start_map([job("a", submitted_at=1), job("b", submitted_at=2)], [n], policy=Policy(cpu_overcommit=1.0)) == {
        "a": starts["a"]
    }


def test_preempting_jobs_still_hold_their_gpus():
    n = node("a", gpus=1)
    victim = running(
        job("v"), Allocation("a", (GpuSlice(0, 80 * GIB),), 1000, 1024), NOW - 100, state=JobState.PREEMPTING
    )
    victim.preempt_deadline = NOW + 30
    assert start_map([job("j", job_class=1)], [n], [victim]) == {}
