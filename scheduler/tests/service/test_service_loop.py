"""The scheduling loop: starts, preemption workflow, runtime limits, node failure, quotas, drain."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import pytest
from support.env import FakeClock, PgCluster, Seeded, job_spec, seed, whole_gpu_node

from gpunas_scheduler.service import loop as loop_module
from gpunas_scheduler.service.auth import Principal
from gpunas_scheduler.service.errors import Conflict, Forbidden
from gpunas_scheduler.service.loop import SchedulingLoop
from gpunas_scheduler.service.records import CounterKind, JobRecord
from gpunas_scheduler.store import migrate
from gpunas_scheduler.store.memory import MemoryStore
from gpunas_scheduler.store.sql import SqlStore

_db_counter = itertools.count()


class SoleLeader:
    """Leader lock of a single-server test: always held."""

    def __init__(self) -> None:
        self.held = True

    def try_acquire(self) -> bool:
        return self.held

    def release(self) -> None:
        self.held = False


@pytest.fixture
def env() -> Seeded:
    return seed(MemoryStore(), FakeClock())


def p(env: Seeded, user: str) -> Principal:
    return env.service.admit(env.tokens[user])


def submit(env: Seeded, user: str, spec: dict[str, object]) -> str:
    rec, fut = env.service.submit(p(env, user), spec)
    fut.result(timeout=5)
    return rec.id


def get(env: Seeded, job_id: str) -> JobRecord:
    rec = env.service.store.get_job(job_id)
    assert rec is not None
    return rec


def kinds(env: Seeded, job_id: str) -> list[str]:
    return [e.kind for e in env.service.store.job_events(job_id, 100)]


def test_not_leader_does_nothing(env: Seeded) -> None:
    lock = SoleLeader()
    lock.held = False
    env.service.register_node(p(env, "root"), "node-a", whole_gpu_node(2))
    jid = submit(env, "suwon-user", job_spec())
    assert SchedulingLoop(env.service, lock).run_once() is None
    assert get(env, jid).state == "pending"


@pytest.fixture(params=["memory", "postgresql"])
def shared_env(request: pytest.FixtureRequest) -> Iterator[Seeded]:
    if request.param == "memory":
        yield seed(MemoryStore(), FakeClock())
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    store = SqlStore(cluster.create_database(f"fence_{next(_db_counter)}"))
    migrate.upgrade(store.engine)
    try:
        yield seed(store, FakeClock())
    finally:
        store.close()


def test_a_leader_that_lost_its_lock_mid_pass_writes_nothing(
    shared_env: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Server a reads the state and decides; before it commits, its lock session ends and server b
    # takes over and starts an urgent job a never saw on the only GPU. a's lock check passed
    # before the pass, so only the term fence keeps it from starting its job on the same GPU.
    env = shared_env
    svc = env.service
    a, b = SchedulingLoop(svc, SoleLeader()), SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    assert a.run_once() is not None
    queued = submit(env, "suwon-user", job_spec())
    urgent: list[str] = []
    real_schedule = loop_module.schedule

    def b_takes_over(*args: object, **kwargs: object) -> object:
        decisions = real_schedule(*args, **kwargs)  # type: ignore[arg-type]
        if not urgent:
            urgent.append(submit(env, "yongin-user", job_spec("urgent_inference")))
            res = b.run_once()
            assert res is not None and res.started == 1
        return decisions

    monkeypatch.setattr(loop_module, "schedule", b_takes_over)
    assert a.run_once() is None
    assert not a.is_leader
    assert (get(env, urgent[0]).state, get(env, queued).state) == ("running", "pending")
    assert kinds(env, queued) == ["submitted"]


def test_start_run_and_finish(env: Seeded) -> None:
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(8))
    jid = submit(env, "suwon-user", job_spec(gpus=4))
    res = loop.run_once()
    assert res is not None and res.started == 1
    rec = get(env, jid)
    assert rec.state == "running" and rec.node == "node-a"
    assert rec.allocation is not None and len(rec.allocation["slices"]) == 4
    work = svc.assignments(p(env, "node-a"), "node-a")
    assert [w.id for w in work] == [jid]
    with pytest.raises(Forbidden):
        svc.assignments(p(env, "node-b"), "node-a")
    svc.report(p(env, "node-a"), jid, "started")
    env.clock.advance(1800)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    svc.report(p(env, "node-a"), jid, "succeeded", exit_code=0)
    assert get(env, jid).state == "succeeded"
    assert kinds(env, jid) == ["submitted", "started", "container_started", "succeeded"]
    with pytest.raises(Conflict):
        svc.report(p(env, "node-a"), jid, "failed")
    # Half an hour of four GPUs was accounted to the tenant.
    used = svc.store.counters("suwon", {CounterKind.GPU_SECONDS: "2026-11"})[CounterKind.GPU_SECONDS]
    assert used == pytest.approx(4 * 1800)
    assert svc.store.fairshare()["suwon"].decayed_gpu_seconds == pytest.approx(4 * 1800)


def test_urgent_job_preempts_training_which_checkpoints_and_resumes(env: Seeded) -> None:
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    train = submit(env, "suwon-user", job_spec("training"))
    loop.run_once()
    assert get(env, train).state == "running"
    env.clock.advance(600)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    urgent = submit(env, "yongin-user", job_spec("urgent_inference"))
    res = loop.run_once()
    assert res is not None and res.preempted == 1
    victim = get(env, train)
    assert victim.state == "preempting" and victim.preempt_reason == "priority"
    assert victim.preempt_deadline == pytest.approx(env.clock.now + 60)
    assert get(env, urgent).state == "pending"
    [work] = svc.assignments(p(env, "node-a"), "node-a")
    assert work.id == train and work.state == "preempting"
    env.clock.advance(20)
    svc.report(p(env, "node-a"), train, "checkpointed", checkpoint_ref="s3://ckpt/train-600")
    requeued = get(env, train)
    assert (requeued.state, requeued.attempts, requeued.checkpoint_ref) == ("pending", 1, "s3://ckpt/train-600")
    loop.run_once()
    assert get(env, urgent).state == "running"
    svc.report(p(env, "node-a"), urgent, "succeeded")
    loop.run_once()
    resumed = get(env, train)
    assert resumed.state == "running" and resumed.attempts == 1
    started = [e for e in svc.store.job_events(train, 100) if e.kind == "started"]
    assert started[-1].detail["resume_from"] == "s3://ckpt/train-600"
    assert kinds(env, train) == ["submitted", "started", "preempting", "requeued", "started"]


def test_grace_period_expiry_requeues_without_report(env: Seeded) -> None:
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    train = submit(env, "suwon-user", job_spec("training"))
    loop.run_once()
    env.clock.advance(600)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    submit(env, "yongin-user", job_spec("urgent_inference"))
    loop.run_once()
    assert get(env, train).state == "preempting"
    env.clock.advance(61)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    rec = get(env, train)
    assert rec.attempts == 1
    assert rec.state == "pending"
    requeue_ev = [e for e in svc.store.job_events(train, 100) if e.kind == "requeued"]
    assert requeue_ev[0].detail["reason"] == "priority"


def test_training_over_max_runtime_is_checkpointed(env: Seeded) -> None:
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    jid = submit(env, "suwon-user", {**job_spec("training"), "max_runtime_s": 3600})
    loop.run_once()
    env.clock.advance(3601)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    rec = get(env, jid)
    assert rec.state == "preempting" and rec.preempt_reason == "max_runtime"


def test_node_without_heartbeat_is_marked_down_and_its_jobs_requeued(env: Seeded) -> None:
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    svc.register_node(p(env, "node-b"), "node-b", whole_gpu_node(1))
    j1 = submit(env, "suwon-user", job_spec())
    j2 = submit(env, "suwon-user", job_spec())
    loop.run_once()
    on_a = j1 if get(env, j1).node == "node-a" else j2
    env.clock.advance(31)
    svc.heartbeat(p(env, "node-b"), "node-b", None)
    res = loop.run_once()
    assert res is not None and res.nodes_down == 1
    node_a = svc.store.get_node("node-a")
    assert node_a is not None and node_a.down
    rec = get(env, on_a)
    assert rec.state == "pending" and rec.attempts == 1 and rec.node is None
    assert "requeued" in kinds(env, on_a)
    # It comes back with its next heartbeat and the job runs again.
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    assert get(env, on_a).state == "running"


def test_drained_node_gets_no_new_work(env: Seeded) -> None:
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(2))
    svc.set_drained(p(env, "root"), "node-a", True)
    jid = submit(env, "suwon-user", job_spec())
    loop.run_once()
    assert get(env, jid).state == "pending"
    svc.set_drained(p(env, "root"), "node-a", False)
    loop.run_once()
    assert get(env, jid).state == "running"


def test_gpu_hours_quota_warns_then_holds_and_requeues(env: Seeded) -> None:
    svc = env.service
    t = svc.store.get_tenant("yongin")
    assert t is not None
    t.gpu_hours_per_month = 1.0
    svc.upsert_tenant(t)
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(2))
    jid = submit(env, "yongin-user", job_spec("training"))
    loop.run_once()
    env.clock.advance(0.85 * 3600)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    assert [e.kind for e in svc.store.tenant_events("yongin", 10)] == ["quota_warning"]
    env.clock.advance(0.2 * 3600)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    assert [e.kind for e in svc.store.tenant_events("yongin", 10)] == ["quota_exceeded", "quota_warning"]
    assert get(env, jid).state == "preempting"
    svc.report(p(env, "node-a"), jid, "checkpointed", checkpoint_ref="ck1")
    second = submit(env, "yongin-user", job_spec("training"))
    loop.run_once()
    assert get(env, jid).state == "pending"
    assert get(env, second).state == "pending"
    # Other tenants still run.
    other = submit(env, "suwon-user", job_spec("training"))
    loop.run_once()
    assert get(env, other).state == "running"


def test_gpu_hour_quota_use_is_exported_every_pass(env: Seeded) -> None:
    from prometheus_client import generate_latest

    svc = env.service
    t = svc.store.get_tenant("yongin")
    assert t is not None
    t.gpu_hours_per_month = 10.0
    svc.upsert_tenant(t)
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(2))
    jid = submit(env, "yongin-user", job_spec("training"))

    def ratio() -> str:
        text = generate_latest(svc.metrics.registry).decode()
        return next(
            line.rsplit(" ", 1)[1]
            for line in text.splitlines()
            if line.startswith('gpunas_quota_used_ratio{quota="gpu_hours_per_month",tenant="yongin"}')
        )

    loop.run_once()
    assert ratio() == "0.0"
    env.clock.advance(3600)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    assert ratio() == "0.1"
    svc.report(p(env, "node-a"), jid, "succeeded")
    env.tokens["node-a"] = svc.issue_token(None, "node-a", 40 * 86400).token
    env.clock.advance(31 * 86400)  # a new month: nothing used in it yet
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    loop.run_once()
    assert ratio() == "0.0"


def test_cancel_during_pass_wins_over_stale_decision(env: Seeded) -> None:
    svc = env.service
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    jid = submit(env, "suwon-user", job_spec())

    loop = SchedulingLoop(svc, SoleLeader())
    original = svc.store.list_tenants

    def list_tenants_then_cancel():  # type: ignore[no-untyped-def]
        tenants = original()
        svc.cancel(p(env, "suwon-user"), jid)
        return tenants

    svc.store.list_tenants = list_tenants_then_cancel  # type: ignore[method-assign]
    res = loop.run_once()
    svc.store.list_tenants = original  # type: ignore[method-assign]
    assert res is not None and res.conflicts == 1
    assert get(env, jid).state == "cancelled"
    assert kinds(env, jid) == ["submitted", "cancelled"]


def test_metrics_after_a_pass(env: Seeded) -> None:
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    submit(env, "suwon-user", job_spec())
    submit(env, "suwon-user", job_spec("inference"))
    loop.run_once()
    from prometheus_client import generate_latest

    text = generate_latest(svc.metrics.registry).decode()
    assert 'gpunas_queue_depth{job_class="training",tenant="suwon"} 1.0' in text
    assert 'gpunas_jobs{state="running"} 1.0' in text
    assert 'gpunas_gpu_allocated_units{node="node-a"} 1.0' in text
    assert "gpunas_schedule_pass_seconds_count 1.0" in text
    assert "gpunas_leader 1.0" in text


class ReadCountingStore(MemoryStore):
    """Records which jobs a pass reads in full."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[str] = []

    def jobs_by_id(self, ids: Sequence[str], spec_keys: frozenset[str] | None = None) -> list[JobRecord]:
        self.read.extend(ids)
        return super().jobs_by_id(ids, spec_keys)


def test_pass_rereads_only_new_and_changed_pending_jobs() -> None:
    store = ReadCountingStore()
    env = seed(store, FakeClock())
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    a, b, c = (submit(env, "suwon-user", job_spec()) for _ in range(3))
    res = loop.run_once()
    assert res is not None and res.pending == 3 and sorted(store.read) == sorted([a, b, c])
    store.read.clear()
    res = loop.run_once()
    assert res is not None and res.pending == 3 and store.read == []
    svc.cancel(p(env, "suwon-user"), b)
    d = submit(env, "suwon-user", job_spec())
    res = loop.run_once()
    assert res is not None and res.pending == 3 and store.read == [d]
    # A job that starts, checkpoints and is requeued comes back with a new version: read again.
    store.read.clear()
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    res = loop.run_once()
    assert res is not None and res.started == 1 and res.pending == 3
    [started] = [j for j in (a, c, d) if get(env, j).state == "running"]
    urgent = submit(env, "yongin-user", job_spec("urgent_inference"))
    loop.run_once()
    svc.report(p(env, "node-a"), started, "checkpointed", checkpoint_ref="ckpt")
    store.read.clear()
    res = loop.run_once()
    assert res is not None and get(env, urgent).state == "running"
    assert store.read == [started] and get(env, started).attempts == 1
    store.read.clear()
    assert loop.run_once() is not None and store.read == []


def test_job_read_as_running_and_pending_counts_once() -> None:
    """A job requeued between the pass's two reads keeps its running view (and its GPUs)."""

    class Racing(MemoryStore):
        def job_versions(self, state: str) -> list[tuple[str, int]]:
            rows = super().job_versions(state)
            running = super().job_versions("running")
            return rows + [(job_id, version + 1) for job_id, version in running]

    env = seed(Racing(), FakeClock())
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(1))
    first = submit(env, "suwon-user", job_spec())
    assert (res := loop.run_once()) is not None and res.started == 1
    second = submit(env, "suwon-user", job_spec())
    res = loop.run_once()
    assert res is not None and res.pending == 1 and res.started == 0
    assert get(env, first).state == "running" and get(env, second).state == "pending"


def test_opportunistic_start_is_stored_and_preempted_when_the_hold_is_due(tmp_path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'opp.db'}")
    migrate.upgrade(store.engine)
    env = seed(store, FakeClock())
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    svc.register_node(p(env, "node-a"), "node-a", whole_gpu_node(2))
    first = submit(env, "suwon-user", job_spec("training"))
    loop.run_once()
    svc.report(p(env, "node-a"), first, "started")
    env.clock.advance(600)
    svc.heartbeat(p(env, "node-a"), "node-a", None)
    big = submit(env, "suwon-user", job_spec("training", gpus=2))
    env.clock.advance(1)
    long = submit(env, "suwon-user", job_spec("training"))
    loop.run_once()
    # big holds both GPUs until first's 24 h bound; long would outlast that and starts opportunistically.
    rec = get(env, long)
    assert rec.state == "running" and rec.allocation is not None and rec.allocation["opportunistic"] is True
    assert get(env, first).allocation["opportunistic"] is False
    svc.report(p(env, "node-a"), first, "succeeded", exit_code=0)
    loop.run_once()
    victim = get(env, long)
    assert (victim.state, victim.preempt_reason) == ("preempting", "opportunistic")
    svc.report(p(env, "node-a"), long, "checkpointed", checkpoint_ref="s3://ckpt/long")
    loop.run_once()
    assert (get(env, big).state, get(env, long).state) == ("running", "pending")
