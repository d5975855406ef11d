"""The scheduling loop: load state, run the domain's pass, persist its decisions.

Only the holder of the leader lock runs passes. Every decision is written with the job version
it was computed from; a job changed meanwhile (cancelled, reported finished) keeps its new state
and the stale decision is dropped, to be redone by the next pass.

A server that takes the lock starts a new leadership term in the store, and every pass commits
fenced by its term. A leader that loses its lock during a pass (its PostgreSQL session ends while
its pass runs) therefore cannot write decisions taken from a view the new leader does not share:
the commit fails with ``LeadershipLost`` and the pass is discarded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

from gpunas_scheduler.domain.accounting import account, gpu_quota_level, month_key
from gpunas_scheduler.domain.model import (
    Decisions,
    Job,
    JobClass,
    JobState,
    Node,
    QuotaLevel,
    QuotaNotice,
    ResourceRequest,
    TenantUsage,
)
from gpunas_scheduler.domain.schedule import schedule
from gpunas_scheduler.service.convert import (
    allocation_to_json,
    job_from_record,
    node_from_record,
    tenant_from_record,
)
from gpunas_scheduler.service.core import ACTIVE, SchedulerService, requeue
from gpunas_scheduler.service.ports import Changeset, LeaderLock, LeadershipLost
from gpunas_scheduler.service.records import (
    CounterDelta,
    CounterKind,
    EventRecord,
    FairshareRecord,
    JobRecord,
    JsonDict,
    TenantEventRecord,
)

log = logging.getLogger(__name__)

# What a pass reads from a job's spec (see convert.job_from_record) and its events.
SCHEDULING_SPEC_KEYS = frozenset(
    {"resources", "service", "max_runtime_s", "checkpoint_grace_s", "min_runtime_s", "checkpoint_signal"}
)
_NO_SPEC: JsonDict = {}


@dataclass(frozen=True, slots=True)
class PassResult:
    started: int
    preempted: int
    requeued: int
    nodes_down: int
    conflicts: int
    pending: int
    decision_seconds: float


class SchedulingLoop:
    def __init__(self, service: SchedulerService, lock: LeaderLock) -> None:
        self.service = service
        self.lock = lock
        self._quota_levels: dict[tuple[str, str], QuotaLevel] = {}
        # Pending jobs as of the last pass, by id: (version, job). A pass re-reads only the
        # pending jobs whose version differs (new, requeued or changed), so its cost no longer
        # grows with decoding every queued job's row each second.
        self._pending: dict[str, tuple[int, Job]] = {}
        self._shapes: dict[ResourceRequest, ResourceRequest] = {}
        self._term: int | None = None
        self.is_leader = False

    def run_once(self) -> PassResult | None:
        """One pass if this server leads; None when another server holds the lock."""
        svc = self.service
        self.is_leader = self.lock.try_acquire()
        svc.metrics.leader.set(1 if self.is_leader else 0)
        if not self.is_leader:
            self._pending = {}
            self._term = None
            return None
        store, now, settings = svc.store, svc.clock(), svc.settings
        if self._term is None:
            self._term = store.claim_leadership()
            log.info("leading the scheduler, term %d", self._term)
        ch = Changeset(term=self._term)
        node_recs = store.list_nodes()
        down: set[str] = set()
        for n in node_recs:
            stale = n.last_heartbeat is None or now - n.last_heartbeat > settings.heartbeat_timeout_s
            if stale and not n.down:
                n.down = True
                ch.nodes.append(n)
            if n.down:
                down.add(n.name)

        # Running jobs are read in full every pass and keep a record without its spec (specs are
        # never rewritten by updates). Pending jobs keep only their version (the few that start
        # are read again before their update) and come from the previous pass where their
        # version is unchanged. This keeps a pass over a very long queue cheap and within the
        # server's memory budget.
        recs: dict[str, JobRecord] = {}
        versions: dict[str, int] = {}
        signals: dict[str, str] = {}
        pending: list[Job] = []
        running: list[Job] = []
        for r in store.active_jobs([str(JobState.RUNNING), str(JobState.PREEMPTING)], SCHEDULING_SPEC_KEYS):
            if r.node in down and r.state in (JobState.RUNNING, JobState.PREEMPTING):
                lost_on = r.node
                ch.jobs.append((r, r.version))
                requeue(r, now, f"node {lost_on} down")
                ch.job_events.append(
                    EventRecord(r.id, now, "requeued", {"reason": "node_down", "node": lost_on, "attempt": r.attempts})
                )
                recs[r.id] = r
            job = job_from_record(r, svc.class_limits(JobClass(r.job_class)))
            if job.state is JobState.PENDING:
                pending.append(job)
                versions[r.id] = r.version
            else:
                running.append(job)
                signals[r.id] = str(r.spec.get("checkpoint_signal", "SIGTERM"))
                recs[r.id] = r
            r.spec = _NO_SPEC
        self._load_pending(pending, versions, seen=set(recs))
        nodes = [node_from_record(n) for n in node_recs]
        tenants = {t.name: tenant_from_record(t) for t in store.list_tenants()}

        month = month_key(now)
        fair = store.fairshare()
        before: dict[str, TenantUsage] = {}
        for name in set(tenants) | set(fair):
            fs = fair.get(name)
            month_s = store.counters(name, {CounterKind.GPU_SECONDS: month})[CounterKind.GPU_SECONDS]
            before[name] = TenantUsage(
                tenant=name,
                updated_at=now if fs is None else fs.updated_at,
                decayed_gpu_seconds=0.0 if fs is None else fs.decayed_gpu_seconds,
                month=month,
                month_gpu_seconds=month_s,
            )
        usage = account(before, running, now, settings.policy.half_life_s)
        for name, u in usage.items():
            ch.fairshare.append(FairshareRecord(name, u.decayed_gpu_seconds, u.updated_at))
            prev = before.get(name)
            delta = u.month_gpu_seconds - (prev.month_gpu_seconds if prev is not None else 0.0)
            if delta > 0:
                ch.counters.append(CounterDelta(name, CounterKind.GPU_SECONDS, month, delta))

        for name, tenant in tenants.items():
            # Every pass, so the gauge shows use below the warning too and falls back in a new month.
            if tenant.quotas.gpu_hours_per_month is not None:
                used = gpu_quota_level(tenant, usage.get(name), now, settings.policy.quota_warning_ratio)
                svc.metrics.quota_ratio.labels(name, str(used.dimension)).set(used.ratio)

        t0 = time.perf_counter()
        decisions = schedule(pending, running, nodes, tenants, usage, now, settings.policy)
        elapsed = time.perf_counter() - t0
        svc.metrics.pass_seconds.observe(elapsed)

        touched: dict[str, tuple[JobRecord, int]] = {}
        dropped = 0

        def take(job_id: str) -> JobRecord | None:
            nonlocal dropped
            if job_id in touched:
                return touched[job_id][0]
            r = recs.get(job_id)
            if r is None:
                r = store.get_job(job_id)
                if r is None or r.version != versions.get(job_id):
                    dropped += 1  # changed since it was read: drop the decision
                    return None
            touched[job_id] = (r, r.version)
            return r

        for req in decisions.requeues:
            jr = take(req.job_id)
            if jr is None:
                continue
            was_on = jr.node
            requeue(jr, now, f"grace period over ({req.reason})")
            ch.job_events.append(
                EventRecord(jr.id, now, "requeued", {"reason": str(req.reason), "node": was_on, "attempt": jr.attempts})
            )
        for p in decisions.preemptions:
            jr = take(p.job_id)
            if jr is None:
                continue
            jr.state = str(JobState.PREEMPTING)
            jr.preempt_deadline = p.deadline
            jr.preempt_reason = str(p.reason)
            jr.updated_at = now
            ch.job_events.append(
                EventRecord(
                    jr.id,
                    now,
                    "preempting",
                    {
                        "reason": str(p.reason),
                        "deadline": p.deadline,
                        "for_job": p.for_job,
                        "signal": signals.get(jr.id, "SIGTERM"),
                        "node": jr.node,
                    },
                )
            )
        for s in decisions.starts:
            jr = take(s.job_id)
            if jr is None:
                continue
            jr.state = str(JobState.RUNNING)
            jr.node = s.allocation.node
            jr.allocation = allocation_to_json(s.allocation)
            jr.started_at = now
            jr.preempt_deadline = None
            jr.preempt_reason = None
            jr.reason = None
            jr.updated_at = now
            ch.job_events.append(
                EventRecord(
                    jr.id,
                    now,
                    "started",
                    {"attempt": jr.attempts, "allocation": jr.allocation, "resume_from": jr.checkpoint_ref},
                )
            )
        already = {j.id for j, _ in ch.jobs}
        ch.jobs.extend(v for k, v in touched.items() if k not in already)
        self._quota_events(decisions.quota_notices, now, ch)

        try:
            conflicts = store.commit(ch)
        except LeadershipLost:
            log.warning("another server took over during this pass; its decisions are discarded")
            self.is_leader = False
            self._pending = {}
            self._term = None
            svc.metrics.leader.set(0)
            return None
        if conflicts:
            log.info("dropped %d stale decisions (jobs changed during the pass)", len(conflicts))
        m = svc.metrics
        m.decisions.labels("start").inc(len(decisions.starts))
        m.decisions.labels("preempt").inc(len(decisions.preemptions))
        m.decisions.labels("requeue").inc(len(decisions.requeues))
        applied = {k for k in touched if k not in conflicts}
        self._gauges(pending, running, decisions, applied, nodes, down)
        return PassResult(
            started=len(decisions.starts),
            preempted=len(decisions.preemptions),
            requeued=len(decisions.requeues),
            nodes_down=len(down),
            conflicts=len(conflicts) + dropped,
            pending=len(pending),
            decision_seconds=elapsed,
        )

    def _load_pending(self, pending: list[Job], versions: dict[str, int], seen: set[str]) -> None:
        """Append the pending jobs to ``pending`` and their versions to ``versions``.

        ``seen`` are the jobs read as running or preempting just before: a job that changed state
        between the two reads keeps that view (it still holds its GPUs), so none counts twice.
        """
        store = self.service.store
        previous = self._pending
        current: dict[str, tuple[int, Job]] = {}
        changed: list[str] = []
        for job_id, version in store.job_versions(str(JobState.PENDING)):
            if job_id in seen:
                continue
            hit = previous.get(job_id)
            if hit is not None and hit[0] == version:
                current[job_id] = hit
            else:
                changed.append(job_id)
        # In slices, so that a first pass over a long queue never holds every record at once;
        # equal resource requests share one object (queues hold many jobs of a few shapes).
        shapes = self._shapes
        if len(shapes) > 10_000:
            shapes.clear()
        for start in range(0, len(changed), 1000):
            for r in store.jobs_by_id(changed[start : start + 1000], SCHEDULING_SPEC_KEYS):
                if r.state == JobState.PENDING and r.id not in seen:
                    job = job_from_record(r, self.service.class_limits(JobClass(r.job_class)))
                    job.request = shapes.setdefault(job.request, job.request)
                    current[r.id] = (r.version, job)
        self._pending = current
        for job_id, (version, job) in current.items():
            pending.append(job)
            versions[job_id] = version

    def _quota_events(self, notices: list[QuotaNotice], now: float, ch: Changeset) -> None:
        seen: set[tuple[str, str]] = set()
        for n in notices:
            key = (n.tenant, str(n.dimension))
            seen.add(key)
            if self._quota_levels.get(key) != n.level:
                self._quota_levels[key] = n.level
                kind = "quota_warning" if n.level is QuotaLevel.WARNING else "quota_exceeded"
                self.service.metrics.quota_warnings.labels(n.tenant, str(n.dimension), n.level.name.lower()).inc()
                ch.tenant_events.append(
                    TenantEventRecord(n.tenant, now, kind, {"quota": str(n.dimension), "ratio": round(n.ratio, 4)})
                )
        for key in [k for k in self._quota_levels if k not in seen]:
            del self._quota_levels[key]

    def _gauges(
        self,
        pending: list[Job],
        running: list[Job],
        decisions: Decisions,
        applied: set[str],
        nodes: list[Node],
        down: set[str],
    ) -> None:
        """Gauges after the decisions of this pass that were written."""
        m = self.service.metrics
        started = {d.job_id: d.allocation for d in decisions.starts if d.job_id in applied}
        requeued = {d.job_id for d in decisions.requeues if d.job_id in applied}
        preempting = {d.job_id for d in decisions.preemptions if d.job_id in applied}
        # Counted by class member and named once per key: this runs over every pending job.
        by_class: Counter[tuple[JobClass, str]] = Counter()
        states: Counter[str] = Counter()
        alloc: dict[str, float] = {}
        for j in pending:
            if j.id in started:
                states[str(JobState.RUNNING)] += 1
                a = started[j.id]
                alloc[a.node] = alloc.get(a.node, 0.0) + a.gpu_units
            else:
                by_class[(j.job_class, j.tenant)] += 1
        states[str(JobState.PENDING)] += len(pending) - states[str(JobState.RUNNING)]
        for j in running:
            if j.id in requeued or j.allocation is None:
                states[str(JobState.PENDING)] += 1
                by_class[(j.job_class, j.tenant)] += 1
                continue
            states[str(JobState.PREEMPTING if j.id in preempting else j.state)] += 1
            alloc[j.allocation.node] = alloc.get(j.allocation.node, 0.0) + j.allocation.gpu_units
        m.queue_depth.clear()
        for (cls, tenant), n in by_class.items():
            m.queue_depth.labels(cls.name.lower(), tenant).set(n)
        for st in ACTIVE:
            m.jobs.labels(str(st)).set(states.get(str(st), 0))
        m.gpu_allocated.clear()
        for node in nodes:
            m.gpu_allocated.labels(node.name).set(alloc.get(node.name, 0.0))
        m.gpus_total.set(sum(len(n.gpus) for n in nodes if n.name not in down and not n.drained))
