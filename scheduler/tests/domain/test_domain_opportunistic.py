"""Opportunistic use of held capacity: a preemptible job that would outlast a hold may start on
it, and the held job preempts it when the hold is due, so backfill stays work-conserving and the
held job still starts."""

from __future__ import annotations

from domain_factories import GIB, job, node, running
from hypothesis import given, settings
from hypothesis import strategies as st
from test_domain_properties import check_no_overcommit, contended

from gpunas_scheduler.domain import ClusterState, plan, schedule
from gpunas_scheduler.domain.model import Allocation, GpuSlice, Job, JobClass, JobState, Policy, PreemptReason

NOW = 1_800_000_000.0
DAY = 86_400.0


def busy(job_id: str, gpu: int, started: float, opportunistic: bool = False, **kw: object) -> Job:
    alloc = Allocation("a", (GpuSlice(gpu, 80 * GIB),), 1000, 1024, opportunistic)
    return running(job(job_id, **kw), alloc, started)


def half_busy_node_a(**kw: object) -> list[Job]:
    """Training jobs on GPUs 0-3 of node a: the last one reaches the 24 h limit at NOW + 4 h."""
    return [busy(f"r{g}", g, NOW - DAY + (g + 1) * 3600.0, **kw) for g in range(4)]


def test_a_job_that_outlasts_the_hold_starts_on_it_opportunistically():
    pending = [
        job("big", gpus=8, submitted_at=1),
        job("long", submitted_at=2),
        job("short", submitted_at=3, max_runtime_s=3600.0),
    ]
    d = schedule(pending, half_busy_node_a(), [node("a")], {}, {}, NOW, Policy())
    starts = {s.job_id: s.allocation for s in d.starts}
    assert sorted(starts) == ["long", "short"]
    assert starts["long"].opportunistic and not starts["short"].opportunistic
    assert d.preemptions == []


def test_the_held_job_preempts_its_opportunistic_jobs_when_due():
    # Only an opportunistic job, well inside its minimum run time, is in big's way: the hold is
    # due now, so big preempts it; the free held GPUs take no new opportunistic start meanwhile.
    opp = busy("opp", 4, NOW - 10.0, opportunistic=True, min_runtime_s=3600.0, job_class=JobClass.INFERENCE)
    big = job("big", gpus=8, submitted_at=1)
    late = job("late", submitted_at=2)
    state = ClusterState([node("a")], [opp], Policy())
    d = plan(state, [big, late], {}, {}, NOW)
    assert [(p.job_id, p.reason, p.for_job, p.deadline) for p in d.preemptions] == [
        ("opp", PreemptReason.OPPORTUNISTIC, "big", NOW + opp.checkpoint_grace_s)
    ]
    assert d.starts == []
    opp.state, opp.preempt_deadline, opp.preempt_reason = JobState.PREEMPTING, NOW + 60.0, PreemptReason.OPPORTUNISTIC
    d = plan(state, [big, late], {}, {}, NOW + 30.0)
    assert (d.starts, d.preemptions) == ([], [])
    state.release("opp")
    d = plan(state, [big, late], {}, {}, NOW + 40.0)
    assert [s.job_id for s in d.starts] == ["big"]


def test_a_non_preemptible_job_stays_off_held_gpus():
    # Urgent inference is never a priority victim, so it keeps the strict hold rule; a training
    # job of the same shape starts on the held GPUs opportunistically.
    in_way = half_busy_node_a(min_runtime_s=2 * DAY)
    urgent = {"job_class": JobClass.URGENT_INFERENCE, "max_runtime_s": DAY}
    pending = [job("big", gpus=8, submitted_at=1, **urgent), job("small", submitted_at=2, **urgent)]
    d = schedule(pending, in_way, [node("a")], {}, {}, NOW, Policy())
    assert (d.starts, d.preemptions) == ([], [])
    pending.append(job("train", submitted_at=3))
    d = schedule(pending, in_way, [node("a")], {}, {}, NOW, Policy())
    assert [(s.job_id, s.allocation.opportunistic) for s in d.starts] == [("train", True)]


def test_an_eight_gpu_job_is_not_starved_by_a_stream_of_small_long_jobs():
    # Eight training jobs fill node a and reach their 24 h limit one every 600 s; a new 1-GPU
    # training job (24 h) arrives every 100 s. The stream keeps the freed GPUs busy
    # opportunistically, and big starts once the last of the eight has left.
    first = [busy(f"r{g}", g, NOW - DAY + 600.0 * (g + 1), submitted_at=5) for g in range(8)]
    state = ClusterState([node("a")], first, Policy())
    pending: dict[str, Job] = {"big": job("big", gpus=8, submitted_at=1)}
    reasons: list[PreemptReason] = []
    t = NOW
    for step in range(200):
        t += 100.0
        pending[f"s{step}"] = job(f"s{step}", submitted_at=10 + step)
        d = plan(state, list(pending.values()), {}, {}, t)
        for s in d.starts:
            started = pending.pop(s.job_id)
            started.state, started.allocation, started.started_at = JobState.RUNNING, s.allocation, t
        for p in d.preemptions:
            victim = state.running[p.job_id]
            victim.state, victim.preempt_deadline, victim.preempt_reason = JobState.PREEMPTING, p.deadline, p.reason
            reasons.append(p.reason)
        for r in d.requeues:
            gone = state.running[r.job_id]
            state.release(gone.id)
            gone.state, gone.allocation, gone.started_at = JobState.PENDING, None, None
            pending[gone.id] = gone
        if "big" in state.running:
            break
    assert "big" in state.running
    last_leaves = NOW + 8 * 600.0 + 60.0
    assert t <= last_leaves + 300.0
    assert PreemptReason.OPPORTUNISTIC in reasons


@settings(max_examples=150, deadline=None)
@given(setup=contended(), policy=st.sampled_from([Policy(), Policy(shares_on_whole_gpus=True)]), data=st.data())
def test_no_job_lost_and_no_overcommit_with_holds_and_opportunistic_starts(setup, policy, data):
    """Over passes where jobs finish, are preempted (opportunistically or not) and requeued, every
    job is pending, running or finished exactly once, and no GPU, CPU or memory is overcommitted."""
    cluster, first, later = setup
    submitted = {j.id for j in first}
    pending: dict[str, Job] = {j.id: j for j in first}
    finished: set[str] = set()
    state = ClusterState(cluster, [], policy)
    for step in range(6):
        now = NOW + 600.0 * step
        if step == 1:
            pending.update((j.id, j) for j in later)
            submitted.update(j.id for j in later)
        for j in list(state.running.values()):
            if j.state is JobState.PREEMPTING or data.draw(st.integers(0, 3)) == 0:
                state.release(j.id)
                if j.state is JobState.PREEMPTING:
                    j.state, j.allocation, j.started_at = JobState.PENDING, None, None
                    pending[j.id] = j
                else:
                    j.state = JobState.SUCCEEDED
                    finished.add(j.id)
        d = plan(state, list(pending.values()), {}, {}, now)
        for s in d.starts:
            j = pending.pop(s.job_id)
            j.state, j.allocation, j.started_at = JobState.RUNNING, s.allocation, now
        for p in d.preemptions:
            j = state.running[p.job_id]
            j.state, j.preempt_deadline, j.preempt_reason = JobState.PREEMPTING, p.deadline, p.reason
            if p.reason is PreemptReason.OPPORTUNISTIC:
                assert j.allocation is not None and j.allocation.opportunistic
        check_no_overcommit(cluster, list(state.running.values()), policy)
        in_use = set(state.running)
        assert not (in_use & set(pending)) and not (in_use & finished) and not (set(pending) & finished)
        assert in_use | set(pending) | finished == submitted, "a job was lost"
