"""In-memory twin of :class:`~gpunas_scheduler.store.sql.SqlStore` for service tests.

Same semantics (optimistic job versions, events dropped with a conflicting job, counters added,
copies handed out so callers cannot mutate stored state), no durability.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future

from gpunas_scheduler.service.ports import CeilingExceeded, Changeset, LeadershipLost
from gpunas_scheduler.service.records import (
    CounterKind,
    EventRecord,
    FairshareRecord,
    JobRecord,
    NodeRecord,
    TenantEventRecord,
    TenantRecord,
    TokenRecord,
    UserRecord,
)


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantRecord] = {}
        self._users: dict[str, UserRecord] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._nodes: dict[str, NodeRecord] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._events: dict[str, list[EventRecord]] = {}
        self._tenant_events: list[TenantEventRecord] = []
        self._counters: dict[tuple[str, str, str], float] = {}
        self._lease: tuple[str, float] | None = None  # holder, valid until
        self._fairshare: dict[str, FairshareRecord] = {}
        self._seq = 0
        self._term = 0

    def _add_event(self, ev: EventRecord) -> None:
        self._seq += 1
        stored = copy.deepcopy(ev)
        stored.seq = self._seq
        self._events.setdefault(ev.job_id, []).append(stored)

    def insert_job(self, job: JobRecord, event: EventRecord) -> Future[None]:
        fut: Future[None] = Future()
        with self._lock:
            if job.id in self._jobs:
                fut.set_exception(KeyError(f"duplicate job id {job.id}"))
                return fut
            stored = copy.deepcopy(job)
            stored.version = 1
            self._jobs[job.id] = stored
            self._add_event(event)
        fut.set_result(None)
        return fut

    def commit(self, change: Changeset) -> set[str]:
        ch = copy.deepcopy(change)
        with self._lock:
            if ch.term is not None and ch.term != self._term:
                raise LeadershipLost(f"leadership term {ch.term} is over")
            for job, expected in ch.jobs:
                if expected == 0 and job.id in self._jobs:
                    raise KeyError(f"duplicate job id {job.id}")
            for c in ch.counters:
                key = (c.tenant, str(c.kind), c.period)
                if c.ceiling is not None and self._counters.get(key, 0.0) + c.delta > c.ceiling:
                    raise CeilingExceeded(f"{c.kind} of {c.tenant} for {c.period} would pass {c.ceiling}")
            conflicts = {
                job.id
                for job, expected in ch.jobs
                if expected != 0 and (job.id not in self._jobs or self._jobs[job.id].version != expected)
            }
            for x in ch.tenants:
                self._tenants[x.name] = x
            for u in ch.users:
                self._users[u.name] = u
            for tok in ch.tokens:
                self._tokens[tok.id] = tok
            for n in ch.nodes:
                self._nodes[n.name] = n
            for job, expected in ch.jobs:
                if job.id in conflicts:
                    continue
                if expected != 0:
                    job.spec = self._jobs[job.id].spec
                job.version = expected + 1
                self._jobs[job.id] = job
            for ev in ch.job_events:
                if ev.job_id not in conflicts:
                    self._add_event(ev)
            self._tenant_events.extend(ch.tenant_events)
            for c in ch.counters:
                key = (c.tenant, str(c.kind), c.period)
                self._counters[key] = self._counters.get(key, 0.0) + c.delta
            for f in ch.fairshare:
                self._fairshare[f.tenant] = f
            return conflicts

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return copy.deepcopy(self._jobs.get(job_id))

    def list_jobs(
        self,
        *,
        tenant: str | None,
        states: Iterable[str] | None,
        limit: int,
        before: str | None,
    ) -> list[JobRecord]:
        wanted = None if states is None else set(states)
        with self._lock:
            rows = [
                j
                for j in self._jobs.values()
                if (tenant is None or j.tenant == tenant)
                and (wanted is None or j.state in wanted)
                and (before is None or j.id < before)
            ]
        rows.sort(key=lambda j: j.id, reverse=True)
        return copy.deepcopy(rows[:limit])

    def active_jobs(self, states: Iterable[str], spec_keys: frozenset[str] | None = None) -> Iterator[JobRecord]:
        wanted = set(states)
        with self._lock:
            rows = [j for j in self._jobs.values() if j.state in wanted]
        rows.sort(key=lambda j: j.id)
        out = copy.deepcopy(rows)
        if spec_keys is not None:
            for j in out:
                j.spec = {k: v for k, v in j.spec.items() if k in spec_keys}
        return iter(out)

    def job_versions(self, state: str) -> list[tuple[str, int]]:
        with self._lock:
            return [(j.id, j.version) for j in self._jobs.values() if j.state == state]

    def jobs_by_id(self, ids: Sequence[str], spec_keys: frozenset[str] | None = None) -> list[JobRecord]:
        with self._lock:
            rows = [j for j in (self._jobs.get(i) for i in ids) if j is not None]
        out = copy.deepcopy(rows)
        if spec_keys is not None:
            for j in out:
                j.spec = {k: v for k, v in j.spec.items() if k in spec_keys}
        return out

    def job_events(self, job_id: str, limit: int) -> list[EventRecord]:
        with self._lock:
            return copy.deepcopy(self._events.get(job_id, [])[:limit])

    def tenant_events(self, tenant: str, limit: int) -> list[TenantEventRecord]:
        with self._lock:
            rows = [e for e in reversed(self._tenant_events) if e.tenant == tenant]
        return copy.deepcopy(rows[:limit])

    def get_tenant(self, name: str) -> TenantRecord | None:
        with self._lock:
            return copy.deepcopy(self._tenants.get(name))

    def list_tenants(self) -> list[TenantRecord]:
        with self._lock:
            return copy.deepcopy(sorted(self._tenants.values(), key=lambda x: x.name))

    def get_user(self, name: str) -> UserRecord | None:
        with self._lock:
            return copy.deepcopy(self._users.get(name))

    def list_users(self, tenant: str | None) -> list[UserRecord]:
        with self._lock:
            rows = [u for u in self._users.values() if tenant is None or u.tenant == tenant]
        return copy.deepcopy(sorted(rows, key=lambda u: u.name))

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._lock:
            return copy.deepcopy(self._tokens.get(token_id))

    def list_tokens(self, user: str | None) -> list[TokenRecord]:
        with self._lock:
            rows = [x for x in self._tokens.values() if user is None or x.user == user]
        return copy.deepcopy(sorted(rows, key=lambda x: x.created_at))

    def get_node(self, name: str) -> NodeRecord | None:
        with self._lock:
            return copy.deepcopy(self._nodes.get(name))

    def list_nodes(self) -> list[NodeRecord]:
        with self._lock:
            return copy.deepcopy(sorted(self._nodes.values(), key=lambda n: n.name))

    def counters(self, tenant: str, periods: dict[CounterKind, str]) -> dict[CounterKind, float]:
        with self._lock:
            return {k: self._counters.get((tenant, str(k), p), 0.0) for k, p in periods.items()}

    def fairshare(self) -> dict[str, FairshareRecord]:
        with self._lock:
            return copy.deepcopy(self._fairshare)

    def claim_leadership(self) -> int:
        with self._lock:
            self._term += 1
            return self._term

    def acquire_lease(self, holder: str, now: float, lease_s: float) -> bool:
        with self._lock:
            if self._lease is not None and self._lease[0] != holder and self._lease[1] >= now:
                return False
            self._lease = (holder, now + lease_s)
            return True

    def release_lease(self, holder: str) -> None:
        with self._lock:
            if self._lease is not None and self._lease[0] == holder:
                self._lease = None

    def count_jobs(self) -> int:
        with self._lock:
            return len(self._jobs)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
