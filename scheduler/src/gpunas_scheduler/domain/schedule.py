"""One scheduling pass: the single entry point shared by the server and the simulator."""

from __future__ import annotations

import dataclasses
import heapq
import operator
from collections.abc import Iterable, Mapping

from .accounting import gpu_quota_level
from .cluster import ClusterState, preemptible
from .model import (
    Allocation,
    Decisions,
    Job,
    JobState,
    Node,
    Ordering,
    Policy,
    Pool,
    Preemption,
    PreemptReason,
    QuotaLevel,
    Requeue,
    ResourceRequest,
    Start,
    Tenant,
    TenantUsage,
)


def schedule(
    pending: Iterable[Job],
    running: Iterable[Job],
    nodes: Iterable[Node],
    tenants: Mapping[str, Tenant],
    usage: Mapping[str, TenantUsage],
    now: float,
    policy: Policy | None = None,
) -> Decisions:
    """Decide what to start, preempt and requeue at ``now``.

    ``running`` holds the jobs in state RUNNING or PREEMPTING with their allocations; ``usage``
    should be accounted up to ``now`` (see ``accounting.account``). Nothing passed in is mutated.
    """
    state = ClusterState(nodes, running, policy if policy is not None else Policy())
    return plan(state, pending, tenants, usage, now)


def plan(
    state: ClusterState,
    pending: Iterable[Job],
    tenants: Mapping[str, Tenant],
    usage: Mapping[str, TenantUsage],
    now: float,
) -> Decisions:
    """Run a pass against ``state`` and record the starts in it.

    The simulator keeps one ``ClusterState`` between passes and applies completions with
    ``ClusterState.release``; ``schedule`` builds a fresh one per pass.
    """
    policy = state.policy
    decisions = Decisions()
    state.clear_holds()
    _expire_grace(state, now, decisions)
    _expire_runtime(state, now, decisions)
    over_quota = _quota(state, tenants, usage, now, decisions)
    pass_ = _Pass(state, tenants, usage, now, over_quota, decisions)
    jobs = [j for j in pending if j.state is JobState.PENDING]
    if policy.ordering is Ordering.FIFO:
        jobs.sort(key=_fifo_key)
        for job in jobs:
            if not pass_.consider(job):
                break
    else:
        pass_.run_fairshare(jobs)
    return decisions


_fifo_key = operator.attrgetter("submitted_at", "id")


def _expire_grace(state: ClusterState, now: float, decisions: Decisions) -> None:
    for job_id, deadline in list(state.preempting.items()):
        if deadline <= now:
            job = state.running[job_id]
            decisions.requeues.append(Requeue(job_id, job.preempt_reason or PreemptReason.PRIORITY))


def _preempt(
    state: ClusterState, job: Job, reason: PreemptReason, now: float, decisions: Decisions, for_job: str | None = None
) -> None:
    deadline = now + job.checkpoint_grace_s
    state.mark_preempting(job, deadline, reason)
    decisions.preemptions.append(Preemption(job.id, reason, deadline, for_job))


def _expire_runtime(state: ClusterState, now: float, decisions: Decisions) -> None:
    heap = state.deadlines
    kept: list[tuple[float, str, float]] = []
    while heap and heap[0][0] <= now:
        entry = heapq.heappop(heap)
        job = state.running.get(entry[1])
        if job is None or job.id in state.preempting:
            continue
        if job.state is JobState.RUNNING:
            _preempt(state, job, PreemptReason.MAX_RUNTIME, now, decisions)
        else:
            kept.append(entry)
    for entry in kept:
        heapq.heappush(heap, entry)


def _quota(
    state: ClusterState,
    tenants: Mapping[str, Tenant],
    usage: Mapping[str, TenantUsage],
    now: float,
    decisions: Decisions,
) -> set[str]:
    policy = state.policy
    over: set[str] = set()
    for tenant in tenants.values():
        if tenant.quotas.gpu_hours_per_month is None:
            continue
        notice = gpu_quota_level(tenant, usage.get(tenant.name), now, policy.quota_warning_ratio)
        if notice.level >= QuotaLevel.WARNING:
            decisions.quota_notices.append(notice)
        if notice.level is QuotaLevel.EXCEEDED:
            over.add(tenant.name)
    if over and policy.quota_requeue_running:
        for job in list(state.running.values()):
            if (
                job.tenant in over
                and job.job_class in policy.gpu_quota_classes
                and job.state is JobState.RUNNING
                and job.id not in state.preempting
            ):
                _preempt(state, job, PreemptReason.QUOTA, now, decisions)
    return over


def _dominates(req: ResourceRequest, failed: ResourceRequest) -> bool:
    """Whether ``req`` asks for at least as much of everything as ``failed``.

    A share without explicit GPU memory takes memory in proportion to the GPU it lands on, which
    is not comparable with an explicit amount, so such pairs never dominate each other.
    """
    if req.gpu_share_milli is not None and (req.gpu_memory_mib is None) != (failed.gpu_memory_mib is None):
        return False
    return (
        req.gpus >= failed.gpus
        and (req.gpu_memory_mib or 0) >= (failed.gpu_memory_mib or 0)
        and (req.gpu_share_milli or 0) >= (failed.gpu_share_milli or 0)
        and req.mig_profile == failed.mig_profile
        and req.vgpu_profile == failed.vgpu_profile
        and req.cpu_milli >= failed.cpu_milli
        and req.memory_mib >= failed.memory_mib
    )


class _FailedRequests:
    """Requests that found no room in this pass; capacity only shrinks during a pass, so anything
    asking for at least as much fails too (checked exactly first, then by dominance)."""

    __slots__ = ("by_pool", "exact")

    def __init__(self) -> None:
        self.exact: set[ResourceRequest] = set()
        self.by_pool: dict[Pool, list[ResourceRequest]] = {}

    def add(self, req: ResourceRequest) -> None:
        self.exact.add(req)
        self.by_pool.setdefault(req.pool, []).append(req)


class _Pass:
    def __init__(
        self,
        state: ClusterState,
        tenants: Mapping[str, Tenant],
        usage: Mapping[str, TenantUsage],
        now: float,
        over_quota: set[str],
        decisions: Decisions,
    ) -> None:
        self.state = state
        self.policy = state.policy
        self.tenants = tenants
        self.usage = usage
        self.now = now
        self.over_quota = over_quota
        self.decisions = decisions
        self.preempt_tries = 0
        self.reservation_searches = 0
        self.reserved_pools: set[Pool] = set()
        self.incoming = sum(
            state.allocations[j].gpu_units
            for j in state.preempting
            if state.running[j].preempt_reason in (None, PreemptReason.PRIORITY)
        )
        self.load: dict[str, float] = {}
        self.failed = _FailedRequests()
        self.preempt_failed = _FailedRequests()
        self.opportunistic_failed = _FailedRequests()

    def _weight(self, tenant: str) -> float:
        t = self.tenants.get(tenant)
        return t.weight if t is not None and t.weight > 0 else 1.0

    def _tenant_load(self, tenant: str) -> float:
        """Decayed usage plus a charge for current allocations, per unit of share (lower goes first)."""
        load = self.load.get(tenant)
        if load is None:
            u = self.usage.get(tenant)
            used = u.decayed_gpu_seconds if u is not None else 0.0
            used += self.state.tenant_units.get(tenant, 0.0) * self.policy.running_charge_s
            load = used / self._weight(tenant)
            self.load[tenant] = load
        return load

    def run_fairshare(self, jobs: list[Job]) -> None:
        """Strict class order; inside a class, the tenant furthest below its share first (Fair
        Tree's level fairness at the tenant level), FIFO inside a tenant."""
        by_class: dict[int, dict[str, list[Job]]] = {}
        for job in jobs:
            by_class.setdefault(int(job.job_class), {}).setdefault(job.tenant, []).append(job)
        consider = self.consider
        for cls in sorted(by_class):
            queues = by_class[cls]
            if len(queues) == 1:
                for queue in queues.values():
                    queue.sort(key=_fifo_key)
                    for job in queue:
                        consider(job)
                continue
            # (load, head submitted_at, head id, position, queue, tenant): ids are unique, so
            # comparisons never reach the list.
            heap: list[tuple[float, float, str, int, list[Job], str]] = []
            for tenant, queue in queues.items():
                queue.sort(key=_fifo_key)
                head = queue[0]
                heap.append((self._tenant_load(tenant), head.submitted_at, head.id, 0, queue, tenant))
            heapq.heapify(heap)
            while heap:
                _load, _sub, _id, idx, queue, tenant = heap[0]
                consider(queue[idx])
                idx += 1
                if idx < len(queue):
                    head = queue[idx]
                    heapq.heapreplace(heap, (self._tenant_load(tenant), head.submitted_at, head.id, idx, queue, tenant))
                else:
                    heapq.heappop(heap)

    def consider(self, job: Job) -> bool:
        """Try to start ``job``; returns False when the queue must stop here (no backfill)."""
        self.decisions.considered += 1
        if job.tenant in self.over_quota and job.job_class in self.policy.gpu_quota_classes:
            self.decisions.quota_held.append(job.id)
            return True
        req = job.request
        # A job that some hold lets through sees more than the jobs whose failures are cached.
        cached = job.service is None and not self.state.exempt_from_holds(job)
        known = cached and self._known_to_fail(req, self.failed)
        if known:
            alloc = None
        else:
            alloc = self.state.find(job)
            if alloc is None and cached:
                self.failed.add(req)
        if alloc is None and self.policy.preemption and self.state.holds and preemptible(job):
            alloc = self._find_opportunistic(job)
        if alloc is not None:
            self.state.allocate(job, alloc, self.now)
            self.decisions.starts.append(Start(job.id, alloc))
            if job.tenant in self.load:
                self.load[job.tenant] += alloc.gpu_units * self.policy.running_charge_s / self._weight(job.tenant)
            return True
        if self.policy.preemption and job.job_class <= self.policy.preempt_max_class and self._try_preempt(job):
            return self.policy.backfill
        # A job whose failure was known from a smaller request of its pool is not that pool's
        # first blocked job: that request already had its reservation search (or room made for it).
        if self.policy.backfill and not known and self.reservation_searches < self.policy.reservation_searches:
            self._try_reserve(job)
        return self.policy.backfill

    def _find_opportunistic(self, job: Job) -> Allocation | None:
        """Place ``job`` on capacity held for a job it may outlast, to be preempted when that hold is due.

        Every job searches alike here (bound 0), so failures are cached for all but services.
        """
        req = job.request
        cached = job.service is None
        if cached and self._known_to_fail(req, self.opportunistic_failed):
            return None
        alloc = self.state.find(job, opportunistic=True)
        if alloc is None:
            if cached:
                self.opportunistic_failed.add(req)
            return None
        return dataclasses.replace(alloc, opportunistic=True)

    def _try_reserve(self, job: Job) -> None:
        """Give the first blocked job of each pool a hold, so that later jobs only backfill around it.

        A hold that is due (nothing else in the way leaves later than now) preempts the
        opportunistic jobs in its way, whatever their class and however short their run.
        """
        pool = job.request.pool
        if pool in self.reserved_pools:
            return
        self.reservation_searches += 1
        hold = self.state.reserve(job, self.now)
        if hold is None:
            return
        self.reserved_pools.add(pool)
        if hold.span <= 0.0 and self.policy.preemption:
            for victim in self.state.opportunistic_in_way(job, hold):
                _preempt(self.state, victim, PreemptReason.OPPORTUNISTIC, self.now, self.decisions, for_job=job.id)

    @staticmethod
    def _known_to_fail(req: ResourceRequest, failed: _FailedRequests) -> bool:
        if req in failed.exact:
            return True
        shapes = failed.by_pool.get(req.pool)
        if shapes and any(_dominates(req, f) for f in shapes):
            failed.exact.add(req)
            return True
        return False

    def _try_preempt(self, job: Job) -> bool:
        """Make room for ``job`` by preemption; True when room is being made for it."""
        units = job.request.gpu_units
        if units <= self.incoming:
            self.incoming -= units
            return True
        if self.preempt_tries >= self.policy.max_preemptions_per_pass:
            return False
        req = job.request
        cached = job.service is None and not self.state.exempt_from_holds(job)
        if cached and self._known_to_fail(req, self.preempt_failed):
            return False
        self.preempt_tries += 1
        state = self.state
        now = self.now
        pool = req.pool
        best: tuple[float, int, list[Job]] | None = None
        for ns in state.nodes.values():
            if pool not in ns.pools:
                continue
            candidates = [
                v
                for v in ns.jobs.values()
                if v.job_class > job.job_class
                and v.state is JobState.RUNNING
                and v.id not in state.preempting
                and now - (v.started_at if v.started_at is not None else now) >= v.min_runtime_s
            ]
            if not candidates or not state.fits_after_release(job, ns, candidates):
                continue
            candidates.sort(key=lambda v: (v.work_at_risk_s(now), v.id))
            chosen: list[Job] = []
            cost = 0.0
            for v in candidates:
                chosen.append(v)
                cost += v.work_at_risk_s(now) * state.allocations[v.id].gpu_units
                if best is not None and (cost, len(chosen)) >= best[:2]:
                    break
                if state.fits_after_release(job, ns, chosen):
                    best = (cost, len(chosen), list(chosen))
                    break
        if best is None:
            if cached:
                self.preempt_failed.add(req)
            return False
        for v in best[2]:
            _preempt(state, v, PreemptReason.PRIORITY, now, self.decisions, for_job=job.id)
        freed = sum(state.allocations[v.id].gpu_units for v in best[2])
        self.incoming += max(0.0, freed - units)
        return True
