"""Discrete-event replay of a trace through the domain's scheduling pass.

The simulator owns the clock and the jobs' progress; every decision comes from
``gpunas_scheduler.domain.plan`` with the policy under test. Model of a job (documented in
``docs/simulator.md``): a task needs ``duration`` seconds of GPU work. Training and fine-tuning jobs
checkpoint every ``checkpoint_interval_s`` of progress; when signalled they write a checkpoint in
``checkpoint_write_s`` and exit if that fits in their grace period, otherwise they are killed at
the deadline and fall back to their last periodic checkpoint. A resumed job first spends
``restore_s`` reloading. Inference jobs are stateless services and resume where they stopped.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from ..domain import ClusterState, plan, preemptible, runtime_bound, runtime_limit
from ..domain.accounting import accrue
from ..domain.model import (
    Job,
    JobClass,
    JobState,
    Policy,
    Tenant,
    TenantUsage,
)
from .metrics import Report, jain_index, percentile
from .trace import Trace

_FINISH, _EXIT, _ARRIVAL, _WAKE = 0, 1, 2, 3
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: trace time 0 in the simulated calendar
MAX_PASSES_AT_ONE_TIME = 100_000
STATEFUL = frozenset({JobClass.FINE_TUNING, JobClass.TRAINING})


@dataclass(frozen=True, slots=True)
class SimParams:
    time_scale: float = 1.0
    checkpoint_interval_s: float = 1800.0
    checkpoint_write_s: float = 60.0
    checkpoint_grace_s: float = 120.0
    restore_s: float = 60.0
    min_runtime_s: float = 300.0
    max_fit_checks: int = 256


@dataclass(slots=True)
class _Run:
    job: Job
    work: float
    saved: float = 0.0
    attempt: int = 0
    attempt_start: float = 0.0
    overhead: float = 0.0
    pending_since: float = 0.0
    waited: float = 0.0
    finished_at: float | None = None
    units: float = 0.0
    signalled_progress: float | None = None

    def progress(self, now: float) -> float:
        return self.saved + max(0.0, now - self.attempt_start - self.overhead)

    def periodic_checkpoint(self, now: float, interval: float) -> float:
        done = max(0.0, now - self.attempt_start - self.overhead)
        return self.saved + math.floor(done / interval) * interval


@dataclass(slots=True)
class _Totals:
    preemptions: dict[str, int] = field(default_factory=dict)
    lost_gpu_seconds: float = 0.0
    idle_while_fit: float = 0.0
    held_idle: float = 0.0
    fragmented: float = 0.0
    allocated: float = 0.0
    passes: int = 0
    decisions: int = 0
    contended: dict[str, float] = field(default_factory=dict)


class Simulator:
    def __init__(self, trace: Trace, policy: Policy, params: SimParams | None = None, name: str = "") -> None:
        self.trace = trace
        self.policy = policy
        self.params = params or SimParams()
        self.name = name or f"{policy.ordering.value}/{policy.placement.value}"
        self.state = ClusterState(trace.nodes, [], policy)
        self.capacity = float(sum(len(n.gpus) for n in trace.nodes))
        self.tenants = {t: Tenant(t, weight=w) for t, w in trace.weights.items()}
        self.runs: dict[str, _Run] = {}
        self.pending: dict[str, Job] = {}
        self.rate: dict[str, float] = {}
        self.usage: dict[str, TenantUsage] = {}
        self.allocated_units = 0.0
        self.events: list[tuple[float, int, int, str, int]] = []
        self.seq = 0
        self.totals = _Totals()

    def _push(self, t: float, kind: int, job_id: str = "", attempt: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, job_id, attempt))

    def run(self) -> Report:
        p = self.params
        for task in self.trace.tasks:
            job = Job(
                task.id,
                task.tenant,
                task.tenant,
                task.job_class,
                task.request,
                EPOCH + task.submit / p.time_scale,
                service=task.service,
                checkpoint_grace_s=p.checkpoint_grace_s,
                min_runtime_s=p.min_runtime_s,
            )
            self.runs[job.id] = _Run(job, task.duration, units=task.request.gpu_units)
            self._push(job.submitted_at, _ARRIVAL, job.id)
        now = EPOCH
        flags = (False, False, False)
        passes_at_now = 0
        while self.events:
            t = self.events[0][0]
            self._integrate(now, t, flags)
            passes_at_now = passes_at_now + 1 if t == now else 0
            if passes_at_now > MAX_PASSES_AT_ONE_TIME:
                raise RuntimeError(f"simulation makes no progress at t={t - EPOCH:.0f}s: {passes_at_now} passes")
            now = t
            while self.events and self.events[0][0] == t:
                _t, kind, _seq, job_id, attempt = heapq.heappop(self.events)
                self._handle(kind, job_id, attempt, t)
            self._pass(t)
            flags = self._sample()
        return self._report(now)

    # --------------------------------------------------------------- events
    def _handle(self, kind: int, job_id: str, attempt: int, now: float) -> None:
        if kind == _ARRIVAL:
            run = self.runs[job_id]
            run.pending_since = now
            self.pending[job_id] = run.job
        elif kind == _FINISH:
            run = self.runs[job_id]
            if run.attempt == attempt and run.job.state in (JobState.RUNNING, JobState.PREEMPTING):
                self._stop(run, now)
                run.job.state = JobState.SUCCEEDED
                run.finished_at = now
        elif kind == _EXIT:
            run = self.runs[job_id]
            if run.attempt == attempt and run.job.state is JobState.PREEMPTING:
                if run.signalled_progress is not None:
                    # the GPUs did no work while the checkpoint was written
                    self.totals.lost_gpu_seconds += (run.progress(now) - run.signalled_progress) * run.units
                run.saved = run.signalled_progress if run.signalled_progress is not None else run.progress(now)
                self._stop(run, now)
                self._requeue(run, now)

    def _stop(self, run: _Run, now: float) -> None:
        job = run.job
        self.state.release(job.id)
        self._accrue(now)
        self.rate[job.tenant] -= run.units
        self.allocated_units -= run.units
        run.attempt += 1

    def _requeue(self, run: _Run, now: float) -> None:
        job = run.job
        job.state = JobState.PENDING
        job.attempts += 1
        job.allocation = None
        job.started_at = None
        job.preempt_deadline = None
        job.preempt_reason = None
        run.signalled_progress = None
        run.pending_since = now
        self.pending[job.id] = job

    def _accrue(self, now: float) -> None:
        for tenant, units in self.rate.items():
            u = self.usage.get(tenant) or TenantUsage(tenant, now)
            self.usage[tenant] = accrue(u, units, now, self.policy.half_life_s)

    # ----------------------------------------------------------------- pass
    def _pass(self, now: float) -> None:
        p = self.params
        if self.policy.preemption and any(j.job_class <= self.policy.preempt_max_class for j in self.pending.values()):
            for job_id in self.state.running:
                run = self.runs[job_id]
                if run.job.job_class in STATEFUL and run.job.started_at is not None:
                    done = run.periodic_checkpoint(now, p.checkpoint_interval_s) - run.saved
                    if done > 0:
                        run.job.last_checkpoint_at = run.attempt_start + run.overhead + done
        self._accrue(now)
        d = plan(self.state, self.pending.values(), self.tenants, self.usage, now)
        self.totals.passes += 1
        self.totals.decisions += len(d.starts) + len(d.preemptions) + len(d.requeues)
        for start in d.starts:
            run = self.runs[start.job_id]
            job = run.job
            del self.pending[job.id]
            job.state = JobState.RUNNING
            job.allocation = start.allocation
            job.started_at = now
            job.last_checkpoint_at = None
            run.waited += now - run.pending_since
            run.attempt_start = now
            run.overhead = p.restore_s if job.attempts > 0 and job.job_class in STATEFUL else 0.0
            self.totals.lost_gpu_seconds += run.overhead * run.units
            self.rate[job.tenant] = self.rate.get(job.tenant, 0.0) + run.units
            self.allocated_units += run.units
            self._push(now + run.overhead + run.work - run.saved, _FINISH, job.id, run.attempt)
            limit = runtime_limit(job, self.policy)
            if limit is not None:
                self._push(now + limit, _WAKE)
        for pre in d.preemptions:
            run = self.runs[pre.job_id]
            job = run.job
            job.state = JobState.PREEMPTING
            job.preempt_deadline = pre.deadline
            job.preempt_reason = pre.reason
            self.totals.preemptions[pre.reason.value] = self.totals.preemptions.get(pre.reason.value, 0) + 1
            if job.job_class not in STATEFUL:
                self._push(now, _EXIT, job.id, run.attempt)
            elif p.checkpoint_write_s <= job.checkpoint_grace_s:
                run.signalled_progress = run.progress(now)
                self._push(now + p.checkpoint_write_s, _EXIT, job.id, run.attempt)
            else:
                self._push(pre.deadline, _WAKE)
        if d.requeues:
            self._push(now, _WAKE)
        for req in d.requeues:
            run = self.runs[req.job_id]
            if run.job.state is not JobState.PREEMPTING:
                continue
            kept = run.periodic_checkpoint(now, p.checkpoint_interval_s)
            self.totals.lost_gpu_seconds += (run.progress(now) - kept) * run.units
            run.saved = kept
            self._stop(run, now)
            self._requeue(run, now)

    # -------------------------------------------------------------- metrics
    def _sample(self) -> tuple[bool, bool, bool]:
        """(a pending job fits now, a pending job is blocked by GPU fragmentation, a pending job
        fits now but no pending job may be placed under the backfill reservations of the last pass).

        "Fits" ignores the reservations; a job the policy may place uses held capacity only where
        it may start opportunistically. Blocked by fragmentation: the job's GPU demand is no more
        than the free GPU capacity in total, yet its GPUs fit on no node even ignoring node CPU and
        memory.
        """
        free = self.capacity - self.allocated_units
        fit = frag = placeable = False
        holds = bool(self.state.holds)
        seen: set[tuple[object, ...]] = set()
        checks = 0
        for job in self.pending.values():
            if checks >= self.params.max_fit_checks or (fit and frag and placeable):
                break
            key = (job.request, job.service, runtime_bound(job, self.policy) if holds else 0.0, preemptible(job))
            if key in seen:
                continue
            seen.add(key)
            checks += 1
            if self.state.find(job, holds=False) is not None:
                fit = True
                if not placeable:
                    placeable = not holds or self._placeable(job)
                continue
            if job.request.gpu_units <= free and self.state.find(job, host=False, holds=False) is None:
                frag = True
        return fit, frag, fit and not placeable

    def _placeable(self, job: Job) -> bool:
        """Whether the policy may place ``job`` under the holds of the last pass."""
        if self.state.find(job) is not None:
            return True
        return self.policy.preemption and preemptible(job) and self.state.find(job, opportunistic=True) is not None

    def _integrate(self, t0: float, t1: float, flags: tuple[bool, bool, bool]) -> None:
        dt = t1 - t0
        if dt <= 0:
            return
        free = self.capacity - self.allocated_units
        self.totals.allocated += self.allocated_units * dt
        if self.pending:
            for tenant, units in self.rate.items():
                self.totals.contended[tenant] = self.totals.contended.get(tenant, 0.0) + units * dt
        if flags[0]:
            self.totals.idle_while_fit += free * dt
        if flags[1]:
            self.totals.fragmented += free * dt
        if flags[2]:
            self.totals.held_idle += free * dt

    def _report(self, end: float) -> Report:
        finished = [r for r in self.runs.values() if r.finished_at is not None]
        jct = sorted((r.finished_at or 0.0) - r.job.submitted_at for r in finished)
        wait_tenant: dict[str, list[float]] = {}
        wait_class: dict[str, list[float]] = {}
        for r in self.runs.values():
            # a job still waiting at the end has waited until then
            waited = r.waited + (end - r.pending_since if r.job.state is JobState.PENDING else 0.0)
            wait_tenant.setdefault(r.job.tenant, []).append(waited)
            wait_class.setdefault(r.job.job_class.name.lower(), []).append(waited)
        not_started = sum(1 for r in self.runs.values() if r.job.state is JobState.PENDING and r.job.attempts == 0)
        contended = {t: self.totals.contended.get(t, 0.0) for t in wait_tenant}
        span = max((r.finished_at for r in finished if r.finished_at is not None), default=end) - EPOCH
        return Report(
            policy=self.name,
            trace=self.trace.name,
            tasks=len(self.runs),
            finished=len(finished),
            unfinished=len(self.runs) - len(finished),
            not_started=not_started,
            avg_jct_s=sum(jct) / len(jct) if jct else 0.0,
            p95_jct_s=percentile(jct, 95.0),
            avg_wait_s_by_tenant={k: sum(v) / len(v) for k, v in sorted(wait_tenant.items())},
            avg_wait_s_by_class={k: sum(v) / len(v) for k, v in sorted(wait_class.items())},
            jain_fairness=(
                jain_index([contended[t] / self.trace.weights.get(t, 1.0) for t in sorted(contended)])
                if any(contended.values())
                else None
            ),
            idle_while_fit_gpu_h=self.totals.idle_while_fit / 3600.0,
            held_idle_gpu_h=self.totals.held_idle / 3600.0,
            fragmented_gpu_h=self.totals.fragmented / 3600.0,
            preemptions=dict(sorted(self.totals.preemptions.items())),
            lost_work_gpu_h=self.totals.lost_gpu_seconds / 3600.0,
            makespan_s=span,
            gpu_utilization=self.totals.allocated / (self.capacity * span) if span > 0 and self.capacity else 0.0,
            passes=self.totals.passes,
            decisions=self.totals.decisions,
        )


def simulate(trace: Trace, policy: Policy, params: SimParams | None = None, name: str = "") -> Report:
    return Simulator(trace, policy, params, name).run()
