"""FastAPI application: REST under ``/api/v1``, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpunas_scheduler import __version__
from gpunas_scheduler.api import models as m
from gpunas_scheduler.api.fastpath import (
    RETRY_AFTER_S,
    SUBMIT_PATH,
    UNAVAILABLE_DOCUMENT,
    SubmitFastPath,
    answer_too_large,
    bearer_token,
    declared_too_large,
    error_document,
    validation_document,
)
from gpunas_scheduler.domain.model import JobClass, JobState
from gpunas_scheduler.service.auth import Principal
from gpunas_scheduler.service.core import SchedulerService, TenantUsageReport
from gpunas_scheduler.service.errors import Forbidden, ServiceError
from gpunas_scheduler.service.ports import StoreUnavailable
from gpunas_scheduler.service.records import JobRecord, NodeRecord, Role, TenantRecord, TokenRecord, UserRecord

BEARER_SCHEME = {"type": "http", "scheme": "bearer", "description": "API token: gpn_<id>_<secret>"}

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": m.ValidationErrorOut | m.ErrorOut,
        "description": "Invalid request: schema validation lists every bad field, a rule across fields names one",
    },
    401: {"model": m.ErrorOut, "description": "Missing, unknown, expired or revoked token"},
    403: {"model": m.ErrorOut, "description": "Authenticated but not allowed"},
    404: {"model": m.ErrorOut, "description": "Not found (or not visible to this tenant)"},
    409: {"model": m.ErrorOut, "description": "Conflicting state"},
    413: {"model": m.ErrorOut, "description": "Request body too large"},
    429: {"model": m.ErrorOut, "description": "Tenant quota exhausted"},
    503: {"model": m.ErrorOut, "description": "Database unavailable; retry after Retry-After seconds"},
}

ReadyCheck = Callable[[], dict[str, Any]]


def _bearer_token(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization"))


async def _principal(request: Request) -> Principal:
    # One plain async dependency on purpose: a sync one would hop to a worker thread on every
    # request, and a security sub-dependency costs as much again; the OpenAPI document still
    # declares the bearer scheme (see _document). Token and tenant lookups hit in-memory caches.
    service: SchedulerService = request.app.state.service
    return service.admit(_bearer_token(request))


Auth = Annotated[Principal, Depends(_principal)]
JobIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{22}$")]
NamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
TokenIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


class BodyLimit:
    """ASGI middleware refusing request bodies above ``max_bytes`` with 413."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length" and declared_too_large(v, self.max_bytes):
                await answer_too_large(send, self.max_bytes)
                return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body larger than {self.max_bytes} bytes")
            return msg

        await self.app(scope, limited, send)


class SchedulerApp(FastAPI):
    """FastAPI, except that ``POST /api/v1/jobs`` goes straight to :class:`SubmitFastPath`
    (see fastpath.py) instead of through FastAPI's and Starlette's per-request layers; what the
    fast path does not answer itself goes on through them."""

    submit_fast_path: SubmitFastPath | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        fast = self.submit_fast_path
        if fast is not None and scope["type"] == "http" and scope["path"] == SUBMIT_PATH and scope["method"] == "POST":
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _str(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


def _class_name(value: int) -> str:
    return JobClass(value).name.lower()


def job_out(r: JobRecord) -> m.JobOut:
    return m.JobOut(
        id=r.id,
        tenant=r.tenant,
        user=r.user,
        name=r.spec.get("name"),
        job_class=_class_name(r.job_class),  # type: ignore[arg-type]
        state=r.state,  # type: ignore[arg-type]
        attempts=r.attempts,
        node=r.node,
        submitted_at=r.submitted_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        last_checkpoint_at=r.last_checkpoint_at,
        checkpoint_ref=r.checkpoint_ref,
        preempt_deadline=r.preempt_deadline,
        preempt_reason=r.preempt_reason,
        reason=r.reason,
        spec=r.spec,
        allocation=r.allocation,
    )


def tenant_out(t: TenantRecord) -> m.TenantOut:
    return m.TenantOut(
        name=t.name,
        fairshare_weight=t.fairshare_weight,
        api_calls_per_day=t.api_calls_per_day,
        gpu_hours_per_month=t.gpu_hours_per_month,
        upload_bytes_per_month=t.upload_bytes_per_month,
    )


def user_out(u: UserRecord) -> m.UserOut:
    return m.UserOut(name=u.name, role=str(u.role), tenant=u.tenant, created_at=u.created_at)  # type: ignore[arg-type]


def token_out(t: TokenRecord) -> m.TokenOut:
    return m.TokenOut(id=t.id, user=t.user, created_at=t.created_at, expires_at=t.expires_at, revoked_at=t.revoked_at)


def _ratio(used: float, limit: float | None) -> float | None:
    if limit is None:
        return None
    return used / limit if limit > 0 else 1.0


def usage_out(u: TenantUsageReport) -> m.UsageOut:
    t = u.tenant
    return m.UsageOut(
        tenant=tenant_out(t),
        day=u.day,
        month=u.month,
        api_calls_today=u.api_calls_today,
        gpu_hours_month=u.gpu_hours_month,
        upload_bytes_month=u.upload_bytes_month,
        decayed_gpu_hours=u.decayed_gpu_hours,
        ratios={
            "api_calls_per_day": _ratio(u.api_calls_today, t.api_calls_per_day),
            "gpu_hours_per_month": _ratio(u.gpu_hours_month, t.gpu_hours_per_month),
            "upload_bytes_per_month": _ratio(u.upload_bytes_month, t.upload_bytes_per_month),
        },
        recent_events=[m.TenantEventOut(at=e.at, kind=e.kind, detail=e.detail) for e in u.warnings],
    )


def node_out(n: NodeRecord, jobs: list[JobRecord], shown: Callable[[JobRecord], bool]) -> m.NodeOut:
    """The node with its allocated units from all its jobs, but only the ids of jobs ``shown``."""
    units = 0.0
    for j in jobs:
        if j.allocation is not None:
            units += sum(s.get("share_milli", 1000) for s in j.allocation.get("slices", [])) / 1000.0
    return m.NodeOut(
        name=n.name,
        drained=n.drained,
        down=n.down,
        last_heartbeat=n.last_heartbeat,
        registered_at=n.registered_at,
        cpu_milli=int(n.spec.get("cpu_milli", 0)),
        memory_mib=int(n.spec.get("memory_mib", 0)),
        gpus=list(n.spec.get("gpus", [])),
        allocated_gpu_units=units,
        jobs=[j.id for j in jobs if shown(j)],
    )


def create_app(
    service: SchedulerService,
    *,
    ready: ReadyCheck,
    max_body_bytes: int = 65536,
    metrics_public: bool = False,
    fast_submit: bool = True,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    app = SchedulerApp(
        title="gpunas scheduler",
        version=__version__,
        description="GPU job scheduler of the gpunas platform: queue, quotas, fair-share, preemption.",
        lifespan=lifespan,
    )
    svc = service
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def _service_error(_req: Request, exc: ServiceError) -> Response:
        status, body, headers = error_document(exc)
        return Response(body, status_code=status, media_type="application/json", headers=dict(_str(headers)))

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_req: Request, _exc: StoreUnavailable) -> Response:
        return Response(
            UNAVAILABLE_DOCUMENT,
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's and FastAPI's own errors (a body that does not parse, a body over the limit
        # while streaming, an unknown path or method) in this API's documents, not {"detail": ...}.
        if exc.status_code == 400:
            body = validation_document([{"loc": ("body",), "msg": exc.detail}])
        else:
            field = "body" if exc.status_code == 413 else None
            body = m.ErrorOut(error=str(exc.detail), field=field).model_dump_json().encode()
        return Response(body, status_code=exc.status_code, media_type="application/json", headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> Response:
        return Response(validation_document(list(exc.errors())), status_code=400, media_type="application/json")

    @app.get("/healthz", response_model=m.Health, tags=["health"])
    def healthz() -> m.Health:
        return m.Health(status="ok")

    @app.get("/readyz", response_model=m.Health, tags=["health"], responses={503: {"model": m.Health}})
    def readyz() -> Any:
        try:
            detail = ready()
        except Exception as exc:  # any failure means "not ready"; the reason goes to the caller
            return JSONResponse(m.Health(status="unavailable", detail={"error": str(exc)}).model_dump(), 503)
        return m.Health(status="ok", detail=detail)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}, **ERRORS},
    )
    def metrics(request: Request) -> Response:
        if not metrics_public:
            p = svc.admit(_bearer_token(request))
            if not p.is_platform_admin:
                raise Forbidden("platform admin role required for metrics")
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    api = APIRouter(prefix="/api/v1", responses=ERRORS)

    @api.get("/whoami", response_model=m.WhoAmI, tags=["auth"])
    def whoami(p: Auth) -> m.WhoAmI:
        return m.WhoAmI(user=p.user, role=str(p.role), tenant=p.tenant)  # type: ignore[arg-type]

    # ------------------------------------------------------------ jobs
    @api.post("/jobs", status_code=201, response_model=m.Submitted, tags=["jobs"])
    async def submit(body: m.JobSubmit, p: Auth) -> Response:
        spec = body.model_dump(exclude={"tenant"})
        rec, fut = svc.submit(p, spec, body.tenant)
        await asyncio.wrap_future(fut)
        # The hot path: answer with bytes built here instead of re-validating a response model.
        out = {"id": rec.id, "tenant": rec.tenant, "state": "pending", "submitted_at": rec.submitted_at}
        return Response(json.dumps(out, separators=(",", ":")), status_code=201, media_type="application/json")

    @api.get("/jobs", response_model=m.JobList, tags=["jobs"])
    def list_jobs(
        p: Auth,
        tenant: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")] = None,
        state: Annotated[list[m.StateName] | None, Query(max_length=6)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[str | None, Query(pattern=r"^[0-9a-f]{22}$")] = None,
    ) -> m.JobList:
        rows = svc.list_jobs(p, tenant=tenant, states=None if not state else list(state), limit=limit, before=before)
        nxt = rows[-1].id if len(rows) == limit else None
        return m.JobList(jobs=[job_out(r) for r in rows], next_before=nxt)

    @api.get("/jobs/{job_id}", response_model=m.JobOut, tags=["jobs"])
    def get_job(job_id: JobIdPath, p: Auth) -> m.JobOut:
        return job_out(svc.get_job(p, job_id))

    @api.post("/jobs/{job_id}/cancel", response_model=m.JobOut, tags=["jobs"])
    def cancel_job(job_id: JobIdPath, p: Auth) -> m.JobOut:
        return job_out(svc.cancel(p, job_id))

    @api.get("/jobs/{job_id}/events", response_model=list[m.EventOut], tags=["jobs"])
    def job_events(job_id: JobIdPath, p: Auth, limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[m.EventOut]:
        return [m.EventOut(seq=e.seq, at=e.at, kind=e.kind, detail=e.detail) for e in svc.job_events(p, job_id, limit)]

    @api.post("/jobs/{job_id}/report", response_model=m.JobOut, tags=["agent"])
    def report(job_id: JobIdPath, body: m.ReportIn, p: Auth) -> m.JobOut:
        return job_out(
            svc.report(
                p,
                job_id,
                body.status,
                checkpoint_ref=body.checkpoint_ref,
                exit_code=body.exit_code,
                message=body.message,
            )
        )

    # --------------------------------------------------------- tenants
    @api.get("/tenants", response_model=list[m.TenantOut], tags=["tenants"])
    def list_tenants(p: Auth) -> list[m.TenantOut]:
        return [tenant_out(t) for t in svc.list_tenants(p)]

    @api.put("/tenants/{name}", response_model=m.TenantOut, tags=["tenants"])
    def put_tenant(name: NamePath, body: m.TenantIn, p: Auth) -> m.TenantOut:
        rec = TenantRecord(name=name, **body.model_dump())
        return tenant_out(svc.put_tenant(p, rec))

    @api.get("/tenants/{name}/usage", response_model=m.UsageOut, tags=["tenants"])
    def tenant_usage(name: NamePath, p: Auth) -> m.UsageOut:
        return usage_out(svc.tenant_usage(p, name))

    @api.post("/tenants/{name}/uploads", response_model=m.UploadOut, tags=["tenants"])
    def record_upload(name: NamePath, body: m.UploadIn, p: Auth) -> m.UploadOut:
        return m.UploadOut(accepted=True, ratio=svc.record_upload(p, name, body.bytes))

    # ---------------------------------------------------- users/tokens
    @api.get("/users", response_model=list[m.UserOut], tags=["auth"])
    def list_users(p: Auth) -> list[m.UserOut]:
        return [user_out(u) for u in svc.list_users(p)]

    @api.post("/users", status_code=201, response_model=m.UserOut, tags=["auth"])
    def create_user(body: m.UserIn, p: Auth) -> m.UserOut:
        return user_out(svc.create_user(p, body.name, Role(body.role), body.tenant))

    @api.get("/tokens", response_model=list[m.TokenOut], tags=["auth"])
    def list_tokens(p: Auth) -> list[m.TokenOut]:
        return [token_out(t) for t in svc.list_tokens(p)]

    @api.post("/tokens", status_code=201, response_model=m.IssuedTokenOut, tags=["auth"])
    def issue_token(body: m.TokenIn, p: Auth) -> m.IssuedTokenOut:
        issued = svc.issue_token(p, body.user, body.ttl_s)
        r = issued.record
        return m.IssuedTokenOut(
            id=r.id,
            user=r.user,
            created_at=r.created_at,
            expires_at=r.expires_at,
            revoked_at=r.revoked_at,
            token=issued.token,
        )

    @api.post("/tokens/{token_id}/revoke", response_model=m.TokenOut, tags=["auth"])
    def revoke_token(token_id: TokenIdPath, p: Auth) -> m.TokenOut:
        return token_out(svc.revoke_token(p, token_id))

    # ----------------------------------------------------------- nodes
    @api.get("/nodes", response_model=list[m.NodeOut], tags=["nodes"])
    def list_nodes(p: Auth) -> list[m.NodeOut]:
        by_node: dict[str, list[JobRecord]] = {}
        for j in svc.store.active_jobs([str(JobState.RUNNING), str(JobState.PREEMPTING)]):
            if j.node is not None:
                by_node.setdefault(j.node, []).append(j)
        shown = functools.partial(svc.may_see, p)
        return [node_out(n, by_node.get(n.name, []), shown) for n in svc.list_nodes(p)]

    @api.get("/nodes/{name}", response_model=m.NodeOut, tags=["nodes"])
    def get_node(name: NamePath, p: Auth) -> m.NodeOut:
        n = svc.get_node(p, name)
        return node_out(n, svc.node_jobs(name), functools.partial(svc.may_see, p))

    @api.put("/nodes/{name}", response_model=m.NodeOut, tags=["agent"])
    def register_node(name: NamePath, body: m.NodeIn, p: Auth) -> m.NodeOut:
        n = svc.register_node(p, name, body.model_dump())
        return node_out(n, svc.node_jobs(name), functools.partial(svc.may_see, p))

    @api.post("/nodes/{name}/heartbeat", response_model=m.NodeOut, tags=["agent"])
    def heartbeat(name: NamePath, body: m.HeartbeatIn, p: Auth) -> m.NodeOut:
        n = svc.heartbeat(p, name, {int(k): v for k, v in body.utilization.items()})
        return node_out(n, svc.node_jobs(name), functools.partial(svc.may_see, p))

    @api.get("/nodes/{name}/assignments", response_model=list[m.Assignment], tags=["agent"])
    def assignments(name: NamePath, p: Auth) -> list[m.Assignment]:
        out = []
        for j in svc.assignments(p, name):
            stopping = j.state == JobState.PREEMPTING
            out.append(
                m.Assignment(
                    job=job_out(j),
                    action="checkpoint_and_stop" if stopping else "run",
                    signal=j.spec.get("checkpoint_signal", "SIGTERM") if stopping else None,
                    deadline=j.preempt_deadline if stopping else None,
                )
            )
        return out

    @api.post("/admin/nodes/{name}/drain", response_model=m.NodeOut, tags=["admin"])
    def drain(name: NamePath, p: Auth) -> m.NodeOut:
        return node_out(svc.set_drained(p, name, True), svc.node_jobs(name), functools.partial(svc.may_see, p))

    @api.post("/admin/nodes/{name}/undrain", response_model=m.NodeOut, tags=["admin"])
    def undrain(name: NamePath, p: Auth) -> m.NodeOut:
        return node_out(svc.set_drained(p, name, False), svc.node_jobs(name), functools.partial(svc.may_see, p))

    app.include_router(api)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if fast_submit:
        app.submit_fast_path = SubmitFastPath(functools.partial(FastAPI.__call__, app), service, max_body_bytes)
    _document(app)
    return app


def _document(app: FastAPI) -> None:
    """Keep the document honest: FastAPI documents validation failures as 422 where this API
    answers 400, and it cannot see the bearer authentication done in ``_principal``."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["HTTPBearer"] = BEARER_SCHEME
        for route, path in schema.get("paths", {}).items():
            for op in path.values():
                if route.startswith("/api/") or route == "/metrics":
                    op["security"] = [{"HTTPBearer": []}]
                responses = op.get("responses", {})
                if "422" in responses:
                    del responses["422"]
                    responses.setdefault(
                        "400",
                        {
                            "description": "Invalid request; names the offending field",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrorOut"}}
                            },
                        },
                    )
        comps = schema.get("components", {}).get("schemas", {})
        comps.pop("HTTPValidationError", None)
        comps.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
