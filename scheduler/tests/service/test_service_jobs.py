"""Use cases on the in-memory store with an injected clock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.env import FakeClock, Seeded, job_spec, seed, whole_gpu_node

from gpunas_scheduler.domain.model import JobClass
from gpunas_scheduler.service.auth import Principal
from gpunas_scheduler.service.convert import ClassLimits, job_from_record
from gpunas_scheduler.service.core import ClassAccess, Settings
from gpunas_scheduler.service.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    Unauthenticated,
)
from gpunas_scheduler.service.ports import Changeset
from gpunas_scheduler.service.records import CounterKind, Role
from gpunas_scheduler.store import migrate
from gpunas_scheduler.store.memory import MemoryStore
from gpunas_scheduler.store.sql import SqlStore


@pytest.fixture
def env() -> Seeded:
    return seed(MemoryStore(), FakeClock())


def who(env: Seeded, user: str):  # type: ignore[no-untyped-def]
    return env.service.admit(env.tokens[user])


def test_submit_is_pending_and_durable(env: Seeded) -> None:
    p = who(env, "suwon-user")
    rec, fut = env.service.submit(p, job_spec())
    fut.result(timeout=5)
    stored = env.service.store.get_job(rec.id)
    assert stored is not None
    assert (stored.state, stored.tenant, stored.user, stored.job_class) == ("pending", "suwon", "suwon-user", 4)
    assert [e.kind for e in env.service.store.job_events(rec.id, 10)] == ["submitted"]
    assert len(rec.id) == 22


def test_tenant_resolution(env: Seeded) -> None:
    svc = env.service
    with pytest.raises(Forbidden) as exc:
        svc.submit(who(env, "suwon-user"), job_spec(), "yongin")
    assert exc.value.field == "tenant"
    with pytest.raises(InvalidInput, match="tenant"):
        svc.submit(who(env, "root"), job_spec())
    with pytest.raises(NotFound):
        svc.submit(who(env, "root"), job_spec(), "nowhere")
    rec, _ = svc.submit(who(env, "root"), job_spec(), "yongin")
    assert rec.tenant == "yongin"
    with pytest.raises(Forbidden):
        svc.submit(who(env, "node-a"), job_spec(), "yongin")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (job_spec(mig_profile="1g.10gb", gpu_share_milli=100, gpu_memory_mib=10), "resources"),
        (job_spec(gpus=2, mig_profile="1g.10gb"), "resources.gpus"),
        (job_spec(gpu_share_milli=250), "resources.gpu_memory_mib"),
        ({**job_spec(), "max_runtime_s": 90_000}, "max_runtime_s"),
        ({**job_spec(), "max_runtime_s": 100, "min_runtime_s": 200}, "min_runtime_s"),
    ],
)
def test_semantic_validation_names_the_field(env: Seeded, spec: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        env.service.submit(who(env, "suwon-user"), spec)
    assert exc.value.field == field
    assert env.service.store.count_jobs() == 0


def test_tenants_only_see_their_own_jobs(env: Seeded) -> None:
    svc = env.service
    mine, _ = svc.submit(who(env, "suwon-user"), job_spec())
    other, _ = svc.submit(who(env, "yongin-user"), job_spec())
    with pytest.raises(NotFound):
        svc.get_job(who(env, "suwon-user"), other.id)
    with pytest.raises(NotFound):
        svc.cancel(who(env, "suwon-admin"), other.id)
    with pytest.raises(NotFound):
        svc.job_events(who(env, "suwon-user"), other.id, 10)
    listed = svc.list_jobs(who(env, "suwon-user"), tenant=None, states=None, limit=100, before=None)
    assert [j.id for j in listed] == [mine.id]
    with pytest.raises(Forbidden):
        svc.list_jobs(who(env, "suwon-user"), tenant="yongin", states=None, limit=100, before=None)
    everything = svc.list_jobs(who(env, "root"), tenant=None, states=None, limit=100, before=None)
    assert {j.id for j in everything} == {mine.id, other.id}
    with pytest.raises(Forbidden):
        svc.list_jobs(who(env, "node-a"), tenant=None, states=None, limit=10, before=None)


def test_cancel_rules(env: Seeded) -> None:
    svc = env.service
    rec, _ = svc.submit(who(env, "suwon-user"), job_spec())
    with pytest.raises(Forbidden):
        svc.cancel(who(env, "suwon-user2"), rec.id)
    done = svc.cancel(who(env, "suwon-admin"), rec.id)
    assert done.state == "cancelled" and done.reason == "cancelled by suwon-admin"
    with pytest.raises(Conflict):
        svc.cancel(who(env, "suwon-user"), rec.id)
    kinds = [e.kind for e in svc.store.job_events(rec.id, 10)]
    assert kinds == ["submitted", "cancelled"]


def test_tokens_expire_and_revoke_and_are_hashed(env: Seeded) -> None:
    svc = env.service
    issued = svc.issue_token(who(env, "suwon-admin"), "suwon-user", 120)
    assert svc.admit(issued.token).user == "suwon-user"
    stored = svc.store.get_token(issued.record.id)
    assert stored is not None
    assert issued.token.split("_", 2)[2] not in stored.secret_hash
    assert len(stored.secret_hash) == 64
    env.clock.advance(121)
    with pytest.raises(Unauthenticated, match="expired"):
        svc.admit(issued.token)
    other = svc.issue_token(who(env, "suwon-user"), "suwon-user", 3600)
    with pytest.raises(Forbidden):
        svc.revoke_token(who(env, "yongin-admin"), other.record.id)
    svc.revoke_token(who(env, "suwon-user"), other.record.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        svc.admit(other.token)
    with pytest.raises(Forbidden):
        svc.issue_token(who(env, "suwon-user"), "suwon-admin", 3600)
    with pytest.raises(Unauthenticated):
        svc.admit(issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B"))
    with pytest.raises(Unauthenticated):
        svc.admit("Bearer nonsense")
    with pytest.raises(Unauthenticated):
        svc.admit(None)


@pytest.mark.parametrize("secret", ["_" + "a" * 42, "a" * 20 + "__" + "b" * 21, "-" * 42 + "_"])
def test_token_secrets_with_underscores_admit(env: Seeded, monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    """``token_urlsafe`` draws ``_`` and ``-``: a secret that starts with or holds them is still one secret."""
    monkeypatch.setattr("gpunas_scheduler.service.auth.secrets.token_urlsafe", lambda _n: secret)
    issued = env.service.issue_token(who(env, "suwon-admin"), "suwon-user", 120)
    assert issued.token == f"gpn_{issued.record.id}_{secret}"
    assert env.service.admit(issued.token).user == "suwon-user"
    with pytest.raises(Unauthenticated):
        env.service.admit(f"gpn_{issued.record.id}_{secret[::-1]}")


def test_user_creation_rules(env: Seeded) -> None:
    svc = env.service
    u = svc.create_user(who(env, "suwon-admin"), "suwon-new", Role.TENANT_MEMBER, "suwon")
    assert u.tenant == "suwon"
    with pytest.raises(Forbidden):
        svc.create_user(who(env, "suwon-admin"), "x1", Role.TENANT_MEMBER, "yongin")
    with pytest.raises(Forbidden):
        svc.create_user(who(env, "suwon-admin"), "x2", Role.PLATFORM_ADMIN, None)
    with pytest.raises(Forbidden):
        svc.create_user(who(env, "suwon-user"), "x3", Role.TENANT_MEMBER, "suwon")
    with pytest.raises(Conflict):
        svc.create_user(None, "suwon-new", Role.TENANT_MEMBER, "suwon")
    with pytest.raises(InvalidInput) as exc:
        svc.create_user(None, "Bad Name", Role.TENANT_MEMBER, "suwon")
    assert exc.value.field == "name"
    with pytest.raises(InvalidInput):
        svc.create_user(None, "agent9", Role.AGENT, "suwon")


def test_api_call_quota_warns_at_80_and_refuses_at_100(env: Seeded) -> None:
    svc = env.service
    t = svc.store.get_tenant("yongin")
    assert t is not None
    t.api_calls_per_day = 10
    svc.upsert_tenant(t)
    # The token lookups in seed() were not counted: only admit() counts.
    for _ in range(10):
        svc.admit(env.tokens["yongin-user"])
    with pytest.raises(QuotaExceeded):
        svc.admit(env.tokens["yongin-user2"])
    svc.meter.flush()
    assert svc.store.counters("yongin", {CounterKind.API_CALLS: "2026-11-23"})[CounterKind.API_CALLS] == 10
    events = svc.store.tenant_events("yongin", 10)
    assert [(e.kind, e.detail["used"]) for e in events] == [("quota_warning", 8)]
    # Other tenants and platform admins are unaffected.
    svc.admit(env.tokens["suwon-user"])
    svc.admit(env.tokens["root"])
    # A new UTC day starts a new count.
    env.clock.advance(14 * 3600 + 1)  # T0 is 10:00 UTC
    assert svc.admit(env.tokens["yongin-user"]).tenant == "yongin"


def test_upload_quota(env: Seeded) -> None:
    svc = env.service
    gib = 2**30
    assert svc.record_upload(who(env, "yongin-user"), "yongin", 20 * gib) == pytest.approx(20 / 30)
    ratio = svc.record_upload(who(env, "yongin-user"), "yongin", 5 * gib)
    assert ratio == pytest.approx(25 / 30)
    assert [e.kind for e in svc.store.tenant_events("yongin", 5)] == ["quota_warning"]
    with pytest.raises(QuotaExceeded):
        svc.record_upload(who(env, "yongin-user"), "yongin", 6 * gib)
    with pytest.raises(Forbidden):
        svc.record_upload(who(env, "suwon-user"), "yongin", 1)
    usage = svc.tenant_usage(who(env, "yongin-admin"), "yongin")
    assert usage.upload_bytes_month == 25 * gib
    with pytest.raises(NotFound):
        svc.tenant_usage(who(env, "suwon-user"), "yongin")


def test_node_actors(env: Seeded) -> None:
    svc = env.service
    svc.register_node(who(env, "node-a"), "node-a", whole_gpu_node(2))
    with pytest.raises(Forbidden):
        svc.register_node(who(env, "node-a"), "node-b", whole_gpu_node(2))
    with pytest.raises(Forbidden):
        svc.register_node(who(env, "suwon-admin"), "node-c", whole_gpu_node(2))
    with pytest.raises(Forbidden):
        svc.set_drained(who(env, "suwon-admin"), "node-a", True)
    assert svc.set_drained(who(env, "root"), "node-a", True).drained
    # Re-registration keeps the admin's drain.
    assert svc.register_node(who(env, "node-a"), "node-a", whole_gpu_node(2)).drained
    hb = svc.heartbeat(who(env, "node-a"), "node-a", {0: 0.5})
    assert hb.spec["gpus"][0]["utilization"] == 0.5
    with pytest.raises(NotFound):
        svc.heartbeat(who(env, "node-b"), "node-b", None)
    assert [n.name for n in svc.list_nodes(who(env, "node-b"))] == []


def test_verified_token_cache_honours_revocation_expiry_and_other_servers(env: Seeded) -> None:
    svc = env.service
    ttl = svc.settings.token_cache_ttl_s
    a = svc.issue_token(who(env, "suwon-admin"), "suwon-user", 3600)
    b = svc.issue_token(who(env, "suwon-admin"), "suwon-user", 3600)
    assert svc.admit(a.token).token_id == a.record.id
    assert svc.admit(b.token).token_id == b.record.id
    # Cached answers need the exact token.
    with pytest.raises(Unauthenticated):
        svc.admit(a.token[:-1] + ("A" if a.token[-1] != "A" else "B"))
    # Revoked here: refused at once, the user's other token still works.
    svc.revoke_token(who(env, "suwon-user"), a.record.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        svc.admit(a.token)
    assert svc.admit(b.token).token_id == b.record.id
    # Revoked by another server sharing the database: refused once the cache entry is older
    # than token_cache_ttl_s.
    rec = svc.store.get_token(b.record.id)
    assert rec is not None
    rec.revoked_at = env.clock.now
    svc.store.commit(Changeset(tokens=[rec]))
    assert svc.admit(b.token).token_id == b.record.id
    env.clock.advance(ttl + 0.001)
    with pytest.raises(Unauthenticated, match="revoked"):
        svc.admit(b.token)
    # Expiry is exact, whatever the cache holds.
    c = svc.issue_token(who(env, "suwon-admin"), "suwon-user", 60)
    env.clock.advance(59.999)
    assert svc.admit(c.token).user == "suwon-user"
    env.clock.advance(0.001)
    with pytest.raises(Unauthenticated, match="expired"):
        svc.admit(c.token)


def test_check_racing_a_revocation_caches_nothing(env: Seeded) -> None:
    svc = env.service
    t = svc.issue_token(who(env, "suwon-admin"), "suwon-user", 3600)
    auth = svc.auth
    real = auth._verify
    root = who(env, "root")

    def verify_then_revoke(bearer: str, now: float, generation: int) -> tuple[Principal, float]:
        out = real(bearer, now, generation)
        svc.revoke_token(root, t.record.id)  # lands while the check is in flight
        return out

    auth._verify = verify_then_revoke  # type: ignore[method-assign]
    assert svc.admit(t.token).user == "suwon-user"  # read before the revocation
    auth._verify = real  # type: ignore[method-assign]
    with pytest.raises(Unauthenticated, match="revoked"):
        svc.admit(t.token)


def test_api_call_day_changes_exactly_at_utc_midnight(env: Seeded) -> None:
    """The new day starts at 00:00 UTC to the millisecond; calls of the old day not yet flushed
    are still written to the old day."""
    svc = env.service
    midnight = (env.clock.now // 86400 + 1) * 86400
    env.clock.now = midnight - 0.001
    svc.admit(env.tokens["suwon-user"])
    assert svc.meter.used("suwon") == 1
    env.clock.now = midnight
    assert svc.meter.used("suwon") == 0
    svc.admit(env.tokens["suwon-user"])
    svc.admit(env.tokens["suwon-user"])
    svc.meter.flush()
    got = [
        svc.store.counters("suwon", {CounterKind.API_CALLS: d})[CounterKind.API_CALLS]
        for d in ("2026-11-23", "2026-11-24")
    ]
    assert got == [1, 2]


def test_urgent_class_needs_an_entitlement_by_default() -> None:
    env = seed(MemoryStore(), FakeClock(), Settings())
    with pytest.raises(Forbidden, match="urgent_inference") as exc:
        env.service.submit(who(env, "suwon-admin"), job_spec("urgent_inference"))
    assert exc.value.field == "job_class"
    env.service.submit(who(env, "suwon-user"), job_spec("inference"))
    env.service.submit(who(env, "root"), job_spec("urgent_inference"), "suwon")
    assert env.service.store.count_jobs() == 2


def test_class_entitlements_by_tenant_and_role() -> None:
    admins_of_suwon = ClassAccess(tenants=frozenset({"suwon"}), roles=frozenset({Role.TENANT_ADMIN}))
    access = {JobClass.URGENT_INFERENCE: admins_of_suwon}
    env = seed(MemoryStore(), FakeClock(), Settings(class_access=access))
    env.service.submit(who(env, "suwon-admin"), job_spec("urgent_inference"))
    for user in ("suwon-user", "yongin-admin"):
        with pytest.raises(Forbidden, match="class urgent_inference"):
            env.service.submit(who(env, user), job_spec("urgent_inference"))
    assert env.service.store.count_jobs() == 1


@pytest.mark.parametrize(
    ("over", "field"),
    [({"min_runtime_s": 31_536_000}, "min_runtime_s"), ({"checkpoint_grace_s": 3600}, "checkpoint_grace_s")],
)
def test_preemption_exemptions_are_bounded_by_the_class(over: dict[str, int], field: str) -> None:
    env = seed(MemoryStore(), FakeClock(), Settings(class_access={}))
    with pytest.raises(InvalidInput, match="class training") as exc:
        env.service.submit(who(env, "suwon-user"), {**job_spec(), **over})
    assert exc.value.field == field
    assert env.service.store.count_jobs() == 0


NAS = Settings(tenant_nas_paths={"suwon": ("tank/suwon", "archive/shared")})


def _mounted(source: str, target: str = "/data") -> dict[str, object]:
    return {**job_spec(), "mounts": [{"source": source, "target": target, "read_only": True}]}


@pytest.mark.parametrize(
    ("source", "target", "field"),
    [
        ("../../etc/shadow", "/data", "mounts.0.source"),
        ("tank/suwon/../yongin", "/data", "mounts.0.source"),
        ("tank/suwon/..", "/data", "mounts.0.source"),
        ("tank/yongin", "/data", "mounts.0.source"),
        ("tank/suwonx", "/data", "mounts.0.source"),
        ("tank", "/data", "mounts.0.source"),
        ("tank/suwon", "/../../etc", "mounts.0.target"),
        ("tank/suwon", "/data/..", "mounts.0.target"),
    ],
)
def test_mounts_refuse_traversal_and_foreign_sources(source: str, target: str, field: str) -> None:
    env = seed(MemoryStore(), FakeClock(), NAS)
    with pytest.raises(InvalidInput) as exc:
        env.service.submit(who(env, "suwon-user"), _mounted(source, target))
    assert exc.value.field == field
    assert env.service.store.count_jobs() == 0


def test_jobs_queued_before_a_class_limit_are_held_to_it(env: Seeded) -> None:
    rec, _ = env.service.submit(who(env, "suwon-user"), job_spec())
    rec.spec.update(min_runtime_s=31_536_000, checkpoint_grace_s=3600)
    job = job_from_record(rec, ClassLimits(max_min_runtime_s=1800, max_checkpoint_grace_s=300))
    assert (job.min_runtime_s, job.checkpoint_grace_s) == (1800, 300)


@pytest.mark.parametrize("source", ["tank/suwon", "tank/suwon/datasets/imagenet", "archive/shared/..x"])
def test_mounts_under_the_tenants_nas_paths_are_taken(source: str) -> None:
    env = seed(MemoryStore(), FakeClock(), NAS)
    rec, fut = env.service.submit(who(env, "suwon-user"), _mounted(source))
    fut.result(timeout=5)
    assert rec.spec["mounts"][0]["source"] == source


def test_a_tenant_without_nas_paths_mounts_nothing() -> None:
    env = seed(MemoryStore(), FakeClock(), NAS)
    with pytest.raises(InvalidInput, match="no NAS paths"):
        env.service.submit(who(env, "yongin-user"), _mounted("tank/suwon"))
    default = seed(MemoryStore(), FakeClock())
    with pytest.raises(InvalidInput):
        default.service.submit(who(default, "suwon-user"), _mounted("tank/suwon"))


def test_concurrent_uploads_never_pass_the_quota(tmp_path: Path) -> None:
    """30 uploads of a tenth of the quota at once: at most ten are accepted, and the stored total
    stays within the quota (each read its usage before any of them was counted)."""
    store = SqlStore(f"sqlite:///{tmp_path / 'uploads.db'}")
    migrate.upgrade(store.engine)
    try:
        env = seed(store, FakeClock())
        quota = 30 * 2**30  # yongin's monthly upload quota in the seed
        member = who(env, "yongin-user")
        barrier = threading.Barrier(30)

        def upload() -> bool:
            barrier.wait()
            try:
                env.service.record_upload(member, "yongin", quota // 10)
            except QuotaExceeded:
                return False
            return True

        with ThreadPoolExecutor(30) as pool:
            accepted = sum(pool.map(lambda _: upload(), range(30)))
        assert accepted == 10
        assert env.service.tenant_usage(member, "yongin").upload_bytes_month == quota
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_token_minted_by_a_token_is_bounded_by_it_and_revoked_with_it(backend: str, tmp_path: Path) -> None:
    store = MemoryStore() if backend == "memory" else SqlStore(f"sqlite:///{tmp_path / 'tokens.db'}")
    if isinstance(store, SqlStore):
        migrate.upgrade(store.engine)
    env = seed(store, FakeClock())
    svc = env.service
    parent = svc.issue_token(None, "suwon-user", 3600)
    child = svc.issue_token(svc.admit(parent.token), "suwon-user", 86400)
    grandchild = svc.issue_token(svc.admit(child.token), "suwon-user", 7200)
    other = svc.issue_token(None, "suwon-user", 3600)
    assert child.record.expires_at == grandchild.record.expires_at == parent.record.expires_at
    stored = svc.store.get_token(grandchild.record.id)
    assert stored is not None and stored.parent == child.record.id
    svc.revoke_token(svc.admit(other.token), parent.record.id)
    for t in (parent, child, grandchild):
        with pytest.raises(Unauthenticated, match="revoked"):
            svc.admit(t.token)
    assert svc.admit(other.token).user == "suwon-user"
    if isinstance(store, SqlStore):
        store.close()
