"""The same contract for the SQLite store, the PostgreSQL store and the in-memory twin."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.env import PgCluster

from gpunas_scheduler.service.ports import CeilingExceeded, Changeset, LeadershipLost, Store
from gpunas_scheduler.service.records import (
    CounterDelta,
    CounterKind,
    EventRecord,
    FairshareRecord,
    JobRecord,
    NodeRecord,
    Role,
    TenantEventRecord,
    TenantRecord,
    TokenRecord,
    UserRecord,
)
from gpunas_scheduler.store import migrate
from gpunas_scheduler.store.memory import MemoryStore
from gpunas_scheduler.store.sql import SqlStore

_db_counter = itertools.count()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database(f"contract_{next(_db_counter)}")
    s = SqlStore(url)
    migrate.upgrade(s.engine)
    try:
        yield s
    finally:
        s.close()


def job(i: int, tenant: str = "suwon", state: str = "pending") -> JobRecord:
    return JobRecord(
        id=f"{i:012x}{'0' * 10}",
        tenant=tenant,
        user="u",
        job_class=4,
        state=state,
        gpus=1,
        submitted_at=1000.0 + i,
        spec={"image": "img", "resources": {"gpus": 1}},
        updated_at=1000.0 + i,
    )


def add(store: Store, rec: JobRecord) -> None:
    store.insert_job(rec, EventRecord(rec.id, rec.submitted_at, "submitted", {"n": 1})).result(timeout=10)


def test_insert_get_and_events(store: Store) -> None:
    add(store, job(1))
    got = store.get_job(job(1).id)
    assert got is not None
    assert got.version == 1
    assert got.spec == {"image": "img", "resources": {"gpus": 1}}
    assert [e.kind for e in store.job_events(got.id, 10)] == ["submitted"]
    assert store.get_job("nope") is None
    assert store.count_jobs() == 1


def test_list_newest_first_with_cursor_tenant_and_state(store: Store) -> None:
    for i in range(1, 8):
        add(store, job(i, tenant="suwon" if i % 2 else "yongin"))
    page = store.list_jobs(tenant=None, states=None, limit=3, before=None)
    assert [j.submitted_at for j in page] == [1007.0, 1006.0, 1005.0]
    nxt = store.list_jobs(tenant=None, states=None, limit=3, before=page[-1].id)
    assert [j.submitted_at for j in nxt] == [1004.0, 1003.0, 1002.0]
    suwon = store.list_jobs(tenant="suwon", states=None, limit=100, before=None)
    assert {j.tenant for j in suwon} == {"suwon"}
    assert len(suwon) == 4
    assert store.list_jobs(tenant=None, states=["running"], limit=100, before=None) == []
    assert len(list(store.active_jobs(["pending"]))) == 7


def test_version_conflict_drops_update_and_its_events(store: Store) -> None:
    add(store, job(1))
    add(store, job(2))
    a, b = store.get_job(job(1).id), store.get_job(job(2).id)
    assert a is not None and b is not None
    a.state = "running"
    stale = store.get_job(job(2).id)
    assert stale is not None
    b.state = "cancelled"
    assert store.commit(Changeset(jobs=[(b, b.version)], job_events=[EventRecord(b.id, 1.0, "cancelled")])) == set()
    stale.state = "running"
    conflicts = store.commit(
        Changeset(
            jobs=[(a, a.version), (stale, stale.version)],
            job_events=[EventRecord(a.id, 2.0, "started"), EventRecord(stale.id, 2.0, "started")],
        )
    )
    assert conflicts == {stale.id}
    after_b = store.get_job(b.id)
    assert after_b is not None and after_b.state == "cancelled" and after_b.version == 2
    after_a = store.get_job(a.id)
    assert after_a is not None and after_a.state == "running" and after_a.version == 2
    assert [e.kind for e in store.job_events(b.id, 10)] == ["submitted", "cancelled"]
    assert [e.kind for e in store.job_events(a.id, 10)] == ["submitted", "started"]


def test_a_counter_ceiling_refuses_the_whole_changeset(store: Store) -> None:
    m = "2026-11"
    up = CounterKind.UPLOAD_BYTES
    with pytest.raises(CeilingExceeded):  # a first delta over the ceiling (no row yet)
        store.commit(Changeset(counters=[CounterDelta("suwon", up, m, 11.0, ceiling=10.0)]))
    store.commit(Changeset(counters=[CounterDelta("suwon", up, m, 6.0, ceiling=10.0)]))
    store.commit(Changeset(counters=[CounterDelta("suwon", up, m, 4.0, ceiling=10.0)]))  # reaches it exactly
    event = TenantEventRecord("suwon", 1.0, "quota_warning", {"q": "upload"})
    with pytest.raises(CeilingExceeded):
        store.commit(Changeset(counters=[CounterDelta("suwon", up, m, 1.0, ceiling=10.0)], tenant_events=[event]))
    assert store.counters("suwon", {up: m}) == {up: 10.0}
    assert store.tenant_events("suwon", 10) == []


def test_upserts_counters_fairshare_and_tenant_events(store: Store) -> None:
    store.commit(Changeset(tenants=[TenantRecord("suwon", 2.0, 10, 1.5, 100, 5.0)]))
    store.commit(Changeset(tenants=[TenantRecord("suwon", 3.0, 20, None, None, 5.0)]))
    t = store.get_tenant("suwon")
    assert t == TenantRecord("suwon", 3.0, 20, None, None, 5.0)
    store.commit(Changeset(users=[UserRecord("alice", Role.TENANT_ADMIN, "suwon", 1.0)]))
    assert store.get_user("alice") == UserRecord("alice", Role.TENANT_ADMIN, "suwon", 1.0)
    tok = TokenRecord("0123456789abcdef", "alice", "h" * 64, 100.0, 1.0)
    store.commit(Changeset(tokens=[tok]))
    tok.revoked_at = 50.0
    store.commit(Changeset(tokens=[tok]))
    got_tok = store.get_token(tok.id)
    assert got_tok is not None and got_tok.revoked_at == 50.0
    assert [x.id for x in store.list_tokens("alice")] == [tok.id]
    d = "2026-11-23"
    store.commit(Changeset(counters=[CounterDelta("suwon", CounterKind.API_CALLS, d, 3.0)] * 2))
    store.commit(Changeset(counters=[CounterDelta("suwon", CounterKind.API_CALLS, d, 4.0)]))
    got = store.counters("suwon", {CounterKind.API_CALLS: d, CounterKind.GPU_SECONDS: "2026-11"})
    assert got == {CounterKind.API_CALLS: 10.0, CounterKind.GPU_SECONDS: 0.0}
    store.commit(Changeset(fairshare=[FairshareRecord("suwon", 10.0, 1.0)]))
    store.commit(Changeset(fairshare=[FairshareRecord("suwon", 7.5, 2.0)]))
    assert store.fairshare() == {"suwon": FairshareRecord("suwon", 7.5, 2.0)}
    store.commit(Changeset(tenant_events=[TenantEventRecord("suwon", 1.0, "quota_warning", {"q": "x"})]))
    store.commit(Changeset(tenant_events=[TenantEventRecord("suwon", 2.0, "quota_exceeded", {"q": "x"})]))
    assert [e.kind for e in store.tenant_events("suwon", 10)] == ["quota_exceeded", "quota_warning"]
    n = NodeRecord("node-a", {"cpu_milli": 1, "memory_mib": 1, "gpus": []}, False, 3.0, 1.0, False)
    store.commit(Changeset(nodes=[n]))
    n.drained = True
    store.commit(Changeset(nodes=[n]))
    got_node = store.get_node("node-a")
    assert got_node is not None and got_node.drained and got_node.spec == n.spec
    assert [x.name for x in store.list_nodes()] == ["node-a"]


def test_concurrent_submits_all_land(store: Store) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def worker(base: int) -> None:
        futs = []
        for i in range(50):
            rec = job(base + i)
            futs.append((rec.id, store.insert_job(rec, EventRecord(rec.id, 1.0, "submitted"))))
        for jid, f in futs:
            f.result(timeout=30)
            with lock:
                ids.append(jid)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(ids) == 400
    assert store.count_jobs() == 400
    assert all(store.get_job(i) is not None for i in ids[::37])


def test_failed_group_commit_fails_every_waiter(store: Store) -> None:
    add(store, job(1))
    dup = store.insert_job(job(1), EventRecord(job(1).id, 1.0, "submitted"))
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError (SQL) or KeyError (memory)
        dup.result(timeout=10)
    assert store.count_jobs() == 1
    # The failed transaction was rolled back: the next group commit goes through.
    add(store, job(2))
    assert store.count_jobs() == 2 and [e.kind for e in store.job_events(job(2).id, 10)] == ["submitted"]


def test_trimmed_specs_for_the_loop_never_overwrite_the_stored_spec(store: Store) -> None:
    add(store, job(1))
    [trimmed] = list(store.active_jobs(["pending"], frozenset({"resources"})))
    assert trimmed.spec == {"resources": {"gpus": 1}}
    trimmed.state = "running"
    assert store.commit(Changeset(jobs=[(trimmed, trimmed.version)])) == set()
    full = store.get_job(trimmed.id)
    assert full is not None and full.state == "running"
    assert full.spec == {"image": "img", "resources": {"gpus": 1}}


def test_positional_insert_rows_follow_the_column_list() -> None:
    from gpunas_scheduler.store.sql import _JOB_COLUMNS, _job_row, _job_tuple

    rec = JobRecord("a", "t", "u", 4, "pending", 1, 1.0, {"x": 1}, reason="r", checkpoint_ref="c", preempt_reason="p")
    assert _job_tuple(rec) == tuple(_job_row(rec, 1)[c] for c in _JOB_COLUMNS)


def test_job_versions_and_jobs_by_id(store: Store) -> None:
    for i in range(1, 5):
        add(store, job(i))
    one = store.get_job(job(1).id)
    assert one is not None
    one.state = "running"
    assert store.commit(Changeset(jobs=[(one, one.version)])) == set()
    assert sorted(store.job_versions("pending")) == [(job(i).id, 1) for i in range(2, 5)]
    assert store.job_versions("running") == [(job(1).id, 2)]
    assert store.job_versions("failed") == []
    got = store.jobs_by_id([job(3).id, "nope", job(1).id], frozenset({"resources"}))
    assert sorted((j.id, j.state, j.version) for j in got) == [(job(1).id, "running", 2), (job(3).id, "pending", 1)]
    assert all(j.spec == {"resources": {"gpus": 1}} for j in got)
    assert store.jobs_by_id([]) == []
    many = store.jobs_by_id([job(2).id] + [f"{i:022x}" for i in range(1200)])
    assert [j.id for j in many] == [job(2).id]


def test_a_new_leadership_term_fences_commits_of_the_old_one(store: Store) -> None:
    old = store.claim_leadership()
    store.commit(Changeset(tenants=[TenantRecord("suwon", 1.0, None, None, None, 5.0)], term=old))
    new = store.claim_leadership()
    assert new == old + 1
    with pytest.raises(LeadershipLost):
        store.commit(Changeset(tenants=[TenantRecord("seongnam", 1.0, None, None, None, 5.0)], term=old))
    assert store.get_tenant("seongnam") is None
    store.commit(Changeset(tenants=[TenantRecord("yongin", 1.0, None, None, None, 5.0)], term=new))
    store.commit(Changeset(tenants=[TenantRecord("yongin", 2.0, None, None, None, 5.0)]))  # API writes: no term
    assert [t.name for t in store.list_tenants()] == ["suwon", "yongin"]


def test_a_leader_lease_expires_so_a_hung_leader_does_not_block_fail_over(store: Store) -> None:
    assert store.acquire_lease("a", 100.0, 10.0)
    assert store.acquire_lease("a", 105.0, 10.0)  # renewed: runs to 115
    assert not store.acquire_lease("b", 114.0, 10.0)
    assert store.acquire_lease("b", 115.5, 10.0)  # a hung (SIGSTOP, session open) past its lease
    assert not store.acquire_lease("a", 116.0, 10.0)  # a wakes up: the lease is b's
    store.release_lease("a")  # not a's to release
    assert not store.acquire_lease("a", 116.0, 10.0)
    store.release_lease("b")
    assert store.acquire_lease("a", 117.0, 10.0)
