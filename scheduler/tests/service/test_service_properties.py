"""Property-based invariants of the service on top of the domain's pass (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.env import FakeClock, job_spec, seed, whole_gpu_node

from gpunas_scheduler.service.errors import Conflict, QuotaExceeded
from gpunas_scheduler.service.loop import SchedulingLoop
from gpunas_scheduler.store.memory import MemoryStore

TENANTS = ("suwon", "seongnam", "yongin")
CLASSES = ("urgent_inference", "inference", "fine_tuning", "training")


class SoleLeader:
    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(min_value=0, max_value=30),
    calls=st.lists(st.tuples(st.sampled_from(TENANTS), st.booleans()), max_size=80),
)
def test_no_tenant_above_its_api_call_quota(limit: int, calls: list[tuple[str, bool]]) -> None:
    env = seed(MemoryStore(), FakeClock())
    svc = env.service
    for name in TENANTS:
        t = svc.store.get_tenant(name)
        assert t is not None
        t.api_calls_per_day = limit
        svc.upsert_tenant(t)
    admitted = dict.fromkeys(TENANTS, 0)
    made = dict.fromkeys(TENANTS, 0)
    for tenant, flush in calls:
        made[tenant] += 1
        try:
            svc.admit(env.tokens[f"{tenant}-user"])
            admitted[tenant] += 1
        except QuotaExceeded:
            pass
        if flush:
            svc.meter.flush()
    svc.meter.flush()
    for tenant in TENANTS:
        assert admitted[tenant] == min(made[tenant], limit)
        assert svc.meter.used(tenant) == admitted[tenant]


op = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(TENANTS), st.sampled_from(CLASSES), st.integers(1, 4)),
    st.tuples(st.just("pass")),
    st.tuples(st.just("advance"), st.integers(1, 200)),
    st.tuples(st.just("checkpoint"), st.integers(0, 50)),
    st.tuples(st.just("finish"), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=40))
def test_no_job_is_lost_and_no_gpu_is_overcommitted(ops: list[tuple[object, ...]]) -> None:
    env = seed(MemoryStore(), FakeClock())
    svc = env.service
    loop = SchedulingLoop(svc, SoleLeader())
    node = whole_gpu_node(4)
    for name in ("node-a", "node-b"):
        svc.register_node(svc.admit(env.tokens[name]), name, node)
    submitted: list[str] = []
    attempts: dict[str, int] = {}
    for step in ops:
        kind = step[0]
        if kind == "submit":
            _, tenant, cls, gpus = step
            rec, fut = svc.submit(svc.admit(env.tokens[f"{tenant}-user"]), job_spec(str(cls), gpus=gpus))
            fut.result()
            submitted.append(rec.id)
        elif kind == "pass":
            loop.run_once()
        elif kind == "advance":
            env.clock.advance(float(step[1]))  # type: ignore[arg-type]
            for name in ("node-a", "node-b"):
                svc.heartbeat(svc.admit(env.tokens[name]), name, None)
        elif submitted:
            jid = submitted[int(step[1]) % len(submitted)]  # type: ignore[call-overload]
            rec = svc.store.get_job(jid)
            assert rec is not None
            try:
                if kind == "cancel":
                    svc.cancel(svc.admit(env.tokens["root"]), jid)
                elif rec.node is not None:
                    status = "checkpointed" if kind == "checkpoint" else "succeeded"
                    svc.report(svc.admit(env.tokens[rec.node]), jid, status, checkpoint_ref="ck")
            except Conflict:
                pass
        # Invariants after every step.
        used: dict[tuple[str, int], int] = {}
        for jid in submitted:
            rec = svc.store.get_job(jid)
            assert rec is not None, "a submitted job disappeared"
            assert rec.attempts >= attempts.get(jid, 0)
            attempts[jid] = rec.attempts
            if rec.state in ("running", "preempting"):
                assert rec.node is not None and rec.allocation is not None
                for s in rec.allocation["slices"]:
                    key = (rec.node, s["gpu"])
                    used[key] = used.get(key, 0) + s["share_milli"]
            else:
                assert rec.allocation is None or rec.state in ("succeeded", "failed", "cancelled")
        assert all(v <= 1000 for v in used.values()), used
