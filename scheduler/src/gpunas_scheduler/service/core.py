"""Use cases behind the API and the CLI: jobs, tenants, users, tokens, nodes, agent reports."""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from gpunas_scheduler.domain.accounting import day_key, month_key, upload_level
from gpunas_scheduler.domain.model import (
    TERMINAL_STATES,
    JobClass,
    JobState,
    Policy,
    QuotaLevel,
    TenantUsage,
)
from gpunas_scheduler.service.auth import Authenticator, IssuedToken, Principal, check_name
from gpunas_scheduler.service.convert import ClassLimits, request_from_json, tenant_from_record
from gpunas_scheduler.service.errors import Conflict, Forbidden, InvalidInput, NotFound, QuotaExceeded
from gpunas_scheduler.service.metrics import Metrics
from gpunas_scheduler.service.ports import CeilingExceeded, Changeset, Clock, Store
from gpunas_scheduler.service.quota import ApiCallMeter
from gpunas_scheduler.service.records import (
    CounterDelta,
    CounterKind,
    EventRecord,
    JobRecord,
    JsonDict,
    NodeRecord,
    Role,
    TenantEventRecord,
    TenantRecord,
    TokenRecord,
    UserRecord,
)

ACTIVE = (JobState.PENDING, JobState.RUNNING, JobState.PREEMPTING)


@dataclass(frozen=True, slots=True)
class ClassAccess:
    """Who may submit a class: ``tenants`` (None: every tenant) and, within them, ``roles``
    (None: every tenant role). Platform admins may submit every class for any tenant."""

    tenants: frozenset[str] | None = None
    roles: frozenset[Role] | None = None

    def allows(self, tenant: str, role: Role) -> bool:
        return (self.tenants is None or tenant in self.tenants) and (self.roles is None or role in self.roles)


# The class that preempts other tenants' work is closed unless configured (docs/operations.md).
DEFAULT_CLASS_ACCESS: dict[JobClass, ClassAccess] = {JobClass.URGENT_INFERENCE: ClassAccess(tenants=frozenset())}


_DEFAULT_LIMITS = ClassLimits()


@dataclass(frozen=True, slots=True)
class Settings:
    """Service tunables (filled from the validated configuration)."""

    policy: Policy = field(default_factory=Policy)
    class_access: dict[JobClass, ClassAccess] = field(default_factory=lambda: dict(DEFAULT_CLASS_ACCESS))
    class_limits: dict[JobClass, ClassLimits] = field(default_factory=dict)
    heartbeat_timeout_s: float = 30.0
    tenant_cache_ttl_s: float = 5.0
    default_token_ttl_s: float = 30 * 86400.0
    token_cache_ttl_s: float = 5.0
    # tenant -> NAS paths its jobs may mount (a source must be one of them or lie below one);
    # a tenant not named here may mount nothing.
    tenant_nas_paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TenantUsageReport:
    tenant: TenantRecord
    day: str
    month: str
    api_calls_today: float
    gpu_hours_month: float
    upload_bytes_month: float
    decayed_gpu_hours: float
    warnings: list[TenantEventRecord]


# Job ids need uniqueness, not secrecy (ids of other tenants' jobs answer 404 anyway): a PRNG
# seeded once from the OS avoids a getrandom() system call on every submit.
_ID_RANDOM = random.Random(secrets.randbits(128))


def new_job_id(now: float) -> str:
    """Time-ordered id: 12 hex digits of milliseconds, then 10 random hex digits."""
    return f"{int(now * 1000):012x}{_ID_RANDOM.getrandbits(40):010x}"


class SchedulerService:
    def __init__(self, store: Store, clock: Clock, metrics: Metrics, settings: Settings | None = None) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.settings = settings if settings is not None else Settings()
        self.auth = Authenticator(store, clock, cache_ttl_s=self.settings.token_cache_ttl_s)
        self.meter = ApiCallMeter(store, clock, metrics, warning_ratio=self.settings.policy.quota_warning_ratio)
        self._tenants: dict[str, tuple[float, TenantRecord | None]] = {}
        self._tenant_lock = threading.Lock()

    # ------------------------------------------------------------ requests
    def tenant(self, name: str) -> TenantRecord | None:
        """Tenant record, cached for ``tenant_cache_ttl_s`` (read on every request)."""
        now = self.clock()
        with self._tenant_lock:
            hit = self._tenants.get(name)
        if hit is not None and now - hit[0] <= self.settings.tenant_cache_ttl_s:
            return hit[1]
        rec = self.store.get_tenant(name)
        with self._tenant_lock:
            self._tenants[name] = (now, rec)
        return rec

    def admit(self, bearer: str | None) -> Principal:
        """Authenticate a request and count it against the tenant's API-call quota."""
        principal = self.auth.authenticate(bearer)
        if principal.tenant is not None:
            t = self.tenant(principal.tenant)
            limit = None if t is None else t.api_calls_per_day
            if not self.meter.admit(principal.tenant, limit):
                raise QuotaExceeded(f"tenant {principal.tenant!r} has used its {limit} API calls for today")
        return principal

    # ---------------------------------------------------------------- jobs
    def _resolve_tenant(self, principal: Principal, requested: str | None) -> str:
        if principal.role is Role.AGENT:
            raise Forbidden("agents cannot submit jobs")
        if principal.tenant is not None:
            if requested is not None and requested != principal.tenant:
                raise Forbidden(f"tenant: you may only submit to tenant {principal.tenant!r}", field="tenant")
            return principal.tenant
        if requested is None:
            raise InvalidInput("tenant: required for platform admins", field="tenant")
        if self.tenant(requested) is None:
            raise NotFound(f"tenant {requested!r} not found", field="tenant")
        return requested

    def _check_spec(self, spec: JsonDict) -> JobClass:
        job_class = JobClass[str(spec["job_class"]).upper()]
        req = request_from_json(spec.get("resources", {}))
        forms = [x for x in (req.mig_profile, req.vgpu_profile, req.gpu_share_milli) if x is not None]
        if len(forms) > 1:
            raise InvalidInput(
                "resources: give at most one of mig_profile, vgpu_profile, gpu_share_milli", field="resources"
            )
        if forms and req.gpus != 1:
            raise InvalidInput(
                "resources.gpus: must be 1 with mig_profile, vgpu_profile or gpu_share_milli", field="resources.gpus"
            )
        if req.gpu_share_milli is not None and req.gpu_memory_mib is None:
            raise InvalidInput(
                "resources.gpu_memory_mib: required with gpu_share_milli (no GPU memory overcommit)",
                field="resources.gpu_memory_mib",
            )
        limit = self.settings.policy.max_runtime_s.get(job_class)
        max_rt = spec.get("max_runtime_s")
        if limit is not None and max_rt is not None and max_rt > limit:
            raise InvalidInput(
                f"max_runtime_s: at most {int(limit)} for class {job_class.name.lower()}", field="max_runtime_s"
            )
        if spec.get("min_runtime_s", 0) and max_rt is not None and spec["min_runtime_s"] > max_rt:
            raise InvalidInput("min_runtime_s: must not exceed max_runtime_s", field="min_runtime_s")
        bounds = self.class_limits(job_class)
        for key, default, bound in (
            ("min_runtime_s", 0, bounds.max_min_runtime_s),
            ("checkpoint_grace_s", 60, bounds.max_checkpoint_grace_s),
        ):
            if spec.get(key, default) > bound:
                raise InvalidInput(f"{key}: at most {int(bound)} for class {job_class.name.lower()}", field=key)
        return job_class

    def class_limits(self, job_class: JobClass) -> ClassLimits:
        return self.settings.class_limits.get(job_class, _DEFAULT_LIMITS)

    def _check_mounts(self, tenant: str, mounts: list[JsonDict]) -> None:
        """No ``..`` in a source or target, and every source on one of the tenant's NAS paths."""
        allowed = self.settings.tenant_nas_paths.get(tenant, ())
        for i, mount in enumerate(mounts):
            for key in ("target", "source"):
                if ".." in str(mount[key]).split("/"):
                    raise InvalidInput(f"mounts.{i}.{key}: must not contain '..'", field=f"mounts.{i}.{key}")
            source = str(mount["source"])
            if not allowed:
                raise InvalidInput(
                    f"mounts.{i}.source: tenant {tenant!r} has no NAS paths to mount", field=f"mounts.{i}.source"
                )
            if not any(source == p or source.startswith(p.rstrip("/") + "/") for p in allowed):
                raise InvalidInput(
                    f"mounts.{i}.source: not under the NAS paths of tenant {tenant!r}: {', '.join(allowed)}",
                    field=f"mounts.{i}.source",
                )

    def submit(self, principal: Principal, spec: JsonDict, tenant: str | None = None) -> tuple[JobRecord, Future[None]]:
        """Validate and queue a job; the returned future resolves when it is durable."""
        owner = self._resolve_tenant(principal, tenant)
        job_class = self._check_spec(spec)
        access = self.settings.class_access.get(job_class)
        if access is not None and not principal.is_platform_admin and not access.allows(owner, principal.role):
            raise Forbidden(
                f"job_class: {principal.role} of tenant {owner!r} is not entitled to class {job_class.name.lower()}",
                field="job_class",
            )
        if spec.get("mounts"):
            self._check_mounts(owner, spec["mounts"])
        now = self.clock()
        job_id = new_job_id(now)
        rec = JobRecord(
            id=job_id,
            tenant=owner,
            user=principal.user,
            job_class=int(job_class),
            state=str(JobState.PENDING),
            gpus=int(spec.get("resources", {}).get("gpus", 1)),
            submitted_at=now,
            spec=spec,
            updated_at=now,
        )
        ev = EventRecord(
            job_id=job_id, at=now, kind="submitted", detail={"user": principal.user, "class": job_class.name.lower()}
        )
        fut = self.store.insert_job(rec, ev)
        self.metrics.submits.labels(owner).inc()
        return rec, fut

    def _visible_job(self, principal: Principal, job_id: str) -> JobRecord:
        rec = self.store.get_job(job_id)
        if rec is None or not self.may_see(principal, rec):
            raise NotFound(f"job {job_id!r} not found", field="job_id")
        return rec

    @staticmethod
    def may_see(principal: Principal, rec: JobRecord) -> bool:
        """Whether the job (its id included) is visible to ``principal``."""
        if principal.is_platform_admin:
            return True
        if principal.role is Role.AGENT:
            return rec.node == principal.user
        return rec.tenant == principal.tenant

    def get_job(self, principal: Principal, job_id: str) -> JobRecord:
        return self._visible_job(principal, job_id)

    def list_jobs(
        self,
        principal: Principal,
        *,
        tenant: str | None,
        states: list[str] | None,
        limit: int,
        before: str | None,
    ) -> list[JobRecord]:
        if principal.role is Role.AGENT:
            raise Forbidden("agents list their work through /nodes/{name}/assignments")
        if not principal.is_platform_admin:
            if tenant is not None and tenant != principal.tenant:
                raise Forbidden(f"tenant: you may only list tenant {principal.tenant!r}", field="tenant")
            tenant = principal.tenant
        return self.store.list_jobs(tenant=tenant, states=states, limit=limit, before=before)

    def job_events(self, principal: Principal, job_id: str, limit: int) -> list[EventRecord]:
        self._visible_job(principal, job_id)
        return self.store.job_events(job_id, limit)

    def _update_job(self, rec: JobRecord, events: list[EventRecord], extra: Changeset | None = None) -> JobRecord:
        expected = rec.version
        ch = extra if extra is not None else Changeset()
        ch.jobs.append((rec, expected))
        ch.job_events.extend(events)
        if self.store.commit(ch):
            raise Conflict(f"job {rec.id!r} changed concurrently; retry", field="job_id")
        rec.version = expected + 1
        return rec

    def cancel(self, principal: Principal, job_id: str) -> JobRecord:
        rec = self._visible_job(principal, job_id)
        if principal.role is Role.AGENT:
            raise Forbidden("agents cannot cancel jobs")
        if principal.role is Role.TENANT_MEMBER and rec.user != principal.user:
            raise Forbidden("tenant members may cancel only their own jobs; ask a tenant admin")
        if JobState(rec.state) in TERMINAL_STATES:
            raise Conflict(f"job {job_id!r} is already {rec.state}", field="job_id")
        now = self.clock()
        before = rec.state
        rec.state = str(JobState.CANCELLED)
        rec.finished_at = now
        rec.updated_at = now
        rec.reason = f"cancelled by {principal.user}"
        ev = EventRecord(job_id, now, "cancelled", {"by": principal.user, "from": before, "node": rec.node})
        return self._update_job(rec, [ev])

    # ------------------------------------------------------------- tenants
    def _require_platform_admin(self, principal: Principal) -> None:
        if not principal.is_platform_admin:
            raise Forbidden("platform admin role required")

    def put_tenant(self, principal: Principal, rec: TenantRecord) -> TenantRecord:
        self._require_platform_admin(principal)
        return self.upsert_tenant(rec)

    def upsert_tenant(self, rec: TenantRecord) -> TenantRecord:
        check_name(rec.name, "name")
        if rec.fairshare_weight <= 0:
            raise InvalidInput("fairshare_weight: must be > 0", field="fairshare_weight")
        existing = self.store.get_tenant(rec.name)
        rec = replace(rec, created_at=existing.created_at if existing is not None else self.clock())
        self.store.commit(Changeset(tenants=[rec]))
        with self._tenant_lock:
            self._tenants.pop(rec.name, None)
        return rec

    def list_tenants(self, principal: Principal) -> list[TenantRecord]:
        if principal.is_platform_admin:
            return self.store.list_tenants()
        if principal.tenant is None:
            return []
        t = self.store.get_tenant(principal.tenant)
        return [] if t is None else [t]

    def tenant_usage(self, principal: Principal, name: str) -> TenantUsageReport:
        if not principal.can_read_tenant(name):
            raise NotFound(f"tenant {name!r} not found", field="tenant")
        t = self.store.get_tenant(name)
        if t is None:
            raise NotFound(f"tenant {name!r} not found", field="tenant")
        now = self.clock()
        day, month = day_key(now), month_key(now)
        c = self.store.counters(
            name,
            {CounterKind.API_CALLS: day, CounterKind.GPU_SECONDS: month, CounterKind.UPLOAD_BYTES: month},
        )
        fs = self.store.fairshare().get(name)
        return TenantUsageReport(
            tenant=t,
            day=day,
            month=month,
            api_calls_today=max(c[CounterKind.API_CALLS], self.meter.used(name)),
            gpu_hours_month=c[CounterKind.GPU_SECONDS] / 3600.0,
            upload_bytes_month=c[CounterKind.UPLOAD_BYTES],
            decayed_gpu_hours=0.0 if fs is None else fs.decayed_gpu_seconds / 3600.0,
            warnings=self.store.tenant_events(name, 20),
        )

    def record_upload(self, principal: Principal, tenant: str, nbytes: int) -> float:
        """Account an upload before it is accepted; refuse it at 100 % of the monthly quota."""
        if principal.role is Role.AGENT or not principal.can_read_tenant(tenant):
            raise Forbidden("not allowed to upload for this tenant", field="tenant")
        t = self.store.get_tenant(tenant)
        if t is None:
            raise NotFound(f"tenant {tenant!r} not found", field="tenant")
        now = self.clock()
        month = month_key(now)
        used = self.store.counters(tenant, {CounterKind.UPLOAD_BYTES: month})[CounterKind.UPLOAD_BYTES]
        usage = TenantUsage(tenant=tenant, updated_at=now, month=month, month_upload_bytes=int(used))
        notice = upload_level(tenant_from_record(t), usage, nbytes, now, self.settings.policy.quota_warning_ratio)
        self.metrics.quota_ratio.labels(tenant, "upload_bytes_per_month").set(notice.ratio)
        refused = QuotaExceeded(f"tenant {tenant!r}: upload of {nbytes} bytes exceeds the monthly upload quota")
        if notice.level is QuotaLevel.EXCEEDED:
            self.metrics.quota_warnings.labels(tenant, "upload_bytes_per_month", "exceeded").inc()
            raise refused
        # The usage read above may be stale by now (concurrent uploads): the store counts the
        # upload only if the total stays within the quota, in the same step.
        limit = t.upload_bytes_per_month
        delta = CounterDelta(tenant, CounterKind.UPLOAD_BYTES, month, float(nbytes), ceiling=limit)
        ch = Changeset(counters=[delta])
        if notice.level is QuotaLevel.WARNING:
            self.metrics.quota_warnings.labels(tenant, "upload_bytes_per_month", "warning").inc()
            ch.tenant_events.append(
                TenantEventRecord(
                    tenant, now, "quota_warning", {"quota": "upload_bytes_per_month", "ratio": round(notice.ratio, 4)}
                )
            )
        try:
            self.store.commit(ch)
        except CeilingExceeded as exc:
            self.metrics.quota_warnings.labels(tenant, "upload_bytes_per_month", "exceeded").inc()
            raise refused from exc
        return notice.ratio

    # --------------------------------------------------------- users/tokens
    def create_user(self, principal: Principal | None, name: str, role: Role, tenant: str | None) -> UserRecord:
        """``principal`` None means a local administrator (CLI on the server host)."""
        check_name(name, "name")
        if role in (Role.PLATFORM_ADMIN, Role.AGENT):
            if tenant is not None:
                raise InvalidInput(f"tenant: must be empty for role {role}", field="tenant")
        elif tenant is None:
            raise InvalidInput(f"tenant: required for role {role}", field="tenant")
        if principal is not None:
            allowed = principal.is_platform_admin or (
                tenant is not None and role is not Role.AGENT and principal.can_admin_tenant(tenant)
            )
            if not allowed:
                raise Forbidden("not allowed to create this user")
        if tenant is not None and self.store.get_tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found", field="tenant")
        if self.store.get_user(name) is not None:
            raise Conflict(f"user {name!r} already exists", field="name")
        rec = UserRecord(name=name, role=role, tenant=tenant, created_at=self.clock())
        self.store.commit(Changeset(users=[rec]))
        return rec

    def list_users(self, principal: Principal) -> list[UserRecord]:
        if principal.is_platform_admin:
            return self.store.list_users(None)
        if principal.role is Role.TENANT_ADMIN:
            return self.store.list_users(principal.tenant)
        u = self.store.get_user(principal.user)
        return [] if u is None else [u]

    def issue_token(self, principal: Principal | None, user: str, ttl_s: float | None) -> IssuedToken:
        target = self.store.get_user(user)
        if target is None:
            raise NotFound(f"user {user!r} not found", field="user")
        if principal is not None and not (
            principal.is_platform_admin
            or principal.user == user
            or (target.tenant is not None and principal.can_admin_tenant(target.tenant))
        ):
            raise Forbidden("not allowed to issue tokens for this user")
        ttl = ttl_s if ttl_s is not None else self.settings.default_token_ttl_s
        return self.auth.issue(user, ttl, parent=None if principal is None else principal.token_id)

    def revoke_token(self, principal: Principal | None, token_id: str) -> TokenRecord:
        rec = self.store.get_token(token_id)
        if rec is None:
            raise NotFound(f"token {token_id!r} not found", field="token_id")
        if principal is not None:
            self.auth.check_token_owner(principal, rec)
        return self.auth.revoke(token_id)

    def list_tokens(self, principal: Principal) -> list[TokenRecord]:
        if principal.is_platform_admin:
            return self.store.list_tokens(None)
        if principal.role is Role.TENANT_ADMIN:
            names = {u.name for u in self.store.list_users(principal.tenant)}
            return [tk for tk in self.store.list_tokens(None) if tk.user in names]
        return self.store.list_tokens(principal.user)

    # ---------------------------------------------------------------- nodes
    def _check_node_actor(self, principal: Principal, node: str) -> None:
        if principal.is_platform_admin:
            return
        if principal.role is Role.AGENT and principal.user == node:
            return
        raise Forbidden("only the node's own agent or a platform admin may do this")

    def register_node(self, principal: Principal, name: str, spec: JsonDict) -> NodeRecord:
        check_name(name, "name")
        self._check_node_actor(principal, name)
        now = self.clock()
        existing = self.store.get_node(name)
        rec = NodeRecord(
            name=name,
            spec=spec,
            drained=existing.drained if existing is not None else False,
            last_heartbeat=now,
            registered_at=existing.registered_at if existing is not None else now,
            down=False,
        )
        self.store.commit(Changeset(nodes=[rec]))
        return rec

    def heartbeat(self, principal: Principal, name: str, utilization: dict[int, float] | None) -> NodeRecord:
        self._check_node_actor(principal, name)
        rec = self.store.get_node(name)
        if rec is None:
            raise NotFound(f"node {name!r} is not registered", field="name")
        if utilization:
            gpus: list[dict[str, Any]] = rec.spec.get("gpus", [])
            for g in gpus:
                if g["index"] in utilization:
                    g["utilization"] = utilization[g["index"]]
        rec.last_heartbeat = self.clock()
        rec.down = False
        self.store.commit(Changeset(nodes=[rec]))
        return rec

    def list_nodes(self, principal: Principal) -> list[NodeRecord]:
        if principal.role is Role.AGENT:
            rec = self.store.get_node(principal.user)
            return [] if rec is None else [rec]
        return self.store.list_nodes()

    def get_node(self, principal: Principal, name: str) -> NodeRecord:
        rec = self.store.get_node(name)
        if rec is None or (principal.role is Role.AGENT and principal.user != name):
            raise NotFound(f"node {name!r} not found", field="name")
        return rec

    def set_drained(self, principal: Principal, name: str, drained: bool) -> NodeRecord:
        self._require_platform_admin(principal)
        rec = self.store.get_node(name)
        if rec is None:
            raise NotFound(f"node {name!r} not found", field="name")
        rec.drained = drained
        self.store.commit(Changeset(nodes=[rec]))
        return rec

    def node_jobs(self, name: str) -> list[JobRecord]:
        return [j for j in self.store.active_jobs([str(JobState.RUNNING), str(JobState.PREEMPTING)]) if j.node == name]

    def assignments(self, principal: Principal, name: str) -> list[JobRecord]:
        """What the node's agent must run (RUNNING) or checkpoint and stop (PREEMPTING)."""
        self._check_node_actor(principal, name)
        return self.node_jobs(name)

    def report(
        self,
        principal: Principal,
        job_id: str,
        status: str,
        *,
        checkpoint_ref: str | None = None,
        exit_code: int | None = None,
        message: str | None = None,
    ) -> JobRecord:
        """Agent report: ``started``, ``checkpointed``, ``succeeded`` or ``failed``."""
        rec = self._visible_job(principal, job_id)  # a foreign job answers like an unknown one
        if rec.node is None:
            raise NotFound(f"job {job_id!r} is not placed on any node", field="job_id")
        self._check_node_actor(principal, rec.node)
        state = JobState(rec.state)
        if state not in (JobState.RUNNING, JobState.PREEMPTING):
            raise Conflict(f"job {job_id!r} is {rec.state}, not running", field="job_id")
        now = self.clock()
        detail: JsonDict = {"node": rec.node}
        if message is not None:
            detail["message"] = message
        if status == "started":
            ev = EventRecord(job_id, now, "container_started", detail)
        elif status == "checkpointed":
            rec.last_checkpoint_at = now
            rec.checkpoint_ref = checkpoint_ref
            detail["checkpoint_ref"] = checkpoint_ref
            if state is JobState.PREEMPTING:
                requeue(rec, now, "checkpointed")
                ev = EventRecord(job_id, now, "requeued", detail | {"reason": "checkpointed", "attempt": rec.attempts})
            else:
                ev = EventRecord(job_id, now, "checkpointed", detail)
        elif status in ("succeeded", "failed"):
            rec.state = str(JobState.SUCCEEDED if status == "succeeded" else JobState.FAILED)
            rec.finished_at = now
            rec.reason = message
            detail["exit_code"] = exit_code
            ev = EventRecord(job_id, now, status, detail)
        else:
            raise InvalidInput("status: one of started, checkpointed, succeeded, failed", field="status")
        rec.updated_at = now
        return self._update_job(rec, [ev])


def requeue(rec: JobRecord, now: float, reason: str) -> None:
    """Return a running or preempting job to the queue, keeping its checkpoint to resume from."""
    rec.state = str(JobState.PENDING)
    rec.attempts += 1
    rec.node = None
    rec.allocation = None
    rec.started_at = None
    rec.preempt_deadline = None
    rec.preempt_reason = None
    rec.reason = reason
    rec.updated_at = now
