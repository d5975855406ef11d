"""``POST /api/v1/jobs`` answered by the ASGI fast path must be indistinguishable from the FastAPI
route: same status, same document, same headers that matter, same jobs stored and API calls
counted, for valid requests and for every kind of invalid one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.env import job_spec, seed_service

from gpunas_scheduler.api.app import create_app
from gpunas_scheduler.api.fastpath import SubmitFastPath
from gpunas_scheduler.app import Server, build
from gpunas_scheduler.config import Config
from gpunas_scheduler.service.records import TenantRecord
from gpunas_scheduler.store import migrate

LIMIT = 8192


@dataclass
class Pair:
    fast: TestClient
    slow: TestClient
    server: Server
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    db = tmp_path_factory.mktemp("fastpath") / "fp.db"
    server = build(Config(database_url=f"sqlite:///{db}"), run_loop=False)
    migrate.upgrade(server.store.engine)
    tokens = seed_service(server.service)
    svc = server.service
    svc.upsert_tenant(TenantRecord("seongnam", api_calls_per_day=0))  # every call refused (429)
    fast = TestClient(create_app(svc, ready=dict, max_body_bytes=LIMIT))
    slow = TestClient(create_app(svc, ready=dict, max_body_bytes=LIMIT, fast_submit=False))
    yield Pair(fast, slow, server, tokens)
    server.store.close()


def spec(**over: object) -> dict[str, object]:
    s = {k: v for k, v in job_spec().items() if v is not None}
    s.update(over)
    return s


def j(**over: object) -> bytes:
    return json.dumps(spec(**over), ensure_ascii=False).encode()


JSON = {"content-type": "application/json"}
MOUNT_READ_ONLY_AS_NUMBER = {"source": "a", "target": "/", "read_only": 1}

# (case id, user or raw Authorization value, content-type header or None, body bytes)
CASES: list[tuple[str, str | None, str | None, bytes]] = [
    ("valid", "suwon-user", "application/json", j()),
    ("valid charset", "suwon-user", "application/json; charset=utf-8", j()),
    ("valid upper-case type", "suwon-user", "Application/JSON", j()),
    ("valid +json type", "suwon-user", "application/vnd.gpunas+json", j()),
    ("admin names tenant", "root", "application/json", j(tenant="yongin")),
    ("admin without tenant", "root", "application/json", j()),
    ("admin unknown tenant", "root", "application/json", j(tenant="nowhere")),
    ("member other tenant", "suwon-user", "application/json", j(tenant="yongin")),
    ("agent submits", "node-a", "application/json", j()),
    ("no token", None, "application/json", j()),
    ("unknown token", "Bearer gpn_0000000000000000_" + "a" * 43, "application/json", j()),
    ("malformed token", "Bearer nope", "application/json", j()),
    ("basic scheme", "Basic dXNlcjpwYXNz", "application/json", j()),
    ("quota exhausted", "seongnam-user", "application/json", j()),
    ("quota exhausted and invalid", "seongnam-user", "application/json", j(job_class="x")),
    ("no token and invalid", None, "application/json", j(job_class="x")),
    ("bad gpus", "suwon-user", "application/json", j(resources={"gpus": -1})),
    ("bad class", "suwon-user", "application/json", j(job_class="batch")),
    ("bad image", "suwon-user", "application/json", j(image="bad image")),
    ("nul in command", "suwon-user", "application/json", j(command=["ok", "a\x00b"])),
    ("bad env key", "suwon-user", "application/json", j(env={"1BAD": "x"})),
    ("extra field", "suwon-user", "application/json", j(surprise=1)),
    ("several errors", "suwon-user", "application/json", json.dumps({"image": "", "command": "x"}).encode()),
    ("wrong types", "suwon-user", "application/json", j(resources=[1], mounts={"a": 1})),
    ("share without memory", "suwon-user", "application/json", j(resources={"gpu_share_milli": 3})),
    ("runtime over class limit", "suwon-user", "application/json", j(max_runtime_s=100_000)),
    ("urgent not entitled", "suwon-admin", "application/json", j(job_class="urgent_inference")),
    ("admin submits urgent", "root", "application/json", j(job_class="urgent_inference", tenant="yongin")),
    ("unicode", "suwon-user", "application/json", j(name="학습 작업")),
    ("not an object", "suwon-user", "application/json", b"[1, 2]"),
    ("null", "suwon-user", "application/json", b"null"),
    ("string", "suwon-user", "application/json", b'"job"'),
    ("malformed", "suwon-user", "application/json", b"{not json"),
    ("malformed no token", None, "application/json", b"{not json"),
    ("not utf-8", "suwon-user", "application/json", b'{"image": "\xff"}'),
    ("NaN", "suwon-user", "application/json", b'{"image": "a", "job_class": "training", "max_runtime_s": NaN}'),
    ("empty body", "suwon-user", "application/json", b""),
    ("no content type", "suwon-user", None, j()),
    ("text content type", "suwon-user", "text/plain", j()),
    ("too large", "suwon-user", "application/json", j(command=["x" * 4000] * 3)),
    ("strict gpus as string", "suwon-user", "application/json", j(resources={"gpus": "4"})),
    ("strict gpus as bool", "suwon-user", "application/json", j(resources={"gpus": True})),
    ("strict runtime as float", "suwon-user", "application/json", j(max_runtime_s=3600.0)),
    ("strict bool as number", "suwon-user", "application/json", j(mounts=[MOUNT_READ_ONLY_AS_NUMBER])),
    ("deeply nested", "suwon-user", "application/json", b'{"env":' + b"[" * 3000 + b"]" * 3000 + b"}"),
    ("deeply nested no token", None, "application/json", b"{" + b'"a":{' * 1200 + b"}" * 1201),
]


def test_first_content_type_header_counts_on_both_paths(pair: Pair) -> None:
    raw = [(b"authorization", f"Bearer {pair.tokens['suwon-user']}".encode())]
    for first, second, status in ((b"text/plain", b"application/json", 400), (b"application/json", b"text/plain", 201)):
        headers = [*raw, (b"content-type", first), (b"content-type", second)]
        for client in (pair.fast, pair.slow):
            assert client.post("/api/v1/jobs", content=j(), headers=headers).status_code == status


def _headers(p: Pair, who: str | None, content_type: str | None) -> dict[str, str]:
    h: dict[str, str] = {}
    if who is not None:
        h["Authorization"] = who if " " in who else f"Bearer {p.tokens[who]}"
    if content_type is not None:
        h["content-type"] = content_type
    return h


def _observe(p: Pair, client: TestClient, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    svc = p.server.service
    calls = {t: svc.meter.used(t) for t in ("suwon", "seongnam", "yongin")}
    jobs = p.server.store.count_jobs()
    r = client.post("/api/v1/jobs", content=body, headers=headers)
    doc = r.json()
    if r.status_code == 201:
        assert set(doc) == {"id", "tenant", "state", "submitted_at"} and len(doc["id"]) == 22
        doc = {k: v for k, v in doc.items() if k not in ("id", "submitted_at")}
    return {
        "status": r.status_code,
        "doc": doc,
        "content-type": r.headers.get("content-type"),
        "www-authenticate": r.headers.get("www-authenticate"),
        "jobs stored": p.server.store.count_jobs() - jobs,
        "calls counted": {t: svc.meter.used(t) - n for t, n in calls.items()},
    }


@pytest.mark.parametrize(("case", "who", "content_type", "body"), CASES, ids=[c[0] for c in CASES])
def test_fast_path_answers_like_the_route(
    pair: Pair, case: str, who: str | None, content_type: str | None, body: bytes
) -> None:
    headers = _headers(pair, who, content_type)
    slow = _observe(pair, pair.slow, headers, body)
    fast = _observe(pair, pair.fast, headers, body)
    assert fast == slow, case
    assert fast["status"] < 500, case
    if case.startswith("deeply nested"):
        assert fast["doc"] == {
            "error": "invalid request: body",
            "fields": [{"field": "body", "message": "There was an error parsing the body"}],
        }
    if case.startswith("strict"):
        assert fast["status"] == 400 and "fields" in fast["doc"] and fast["jobs stored"] == 0, fast
    if case.startswith("valid"):
        assert fast["status"] == 201 and fast["jobs stored"] == 1


def test_class_without_entitlement_is_a_403_naming_it(pair: Pair) -> None:
    headers = _headers(pair, "suwon-user", "application/json")
    for client in (pair.fast, pair.slow):
        r = client.post("/api/v1/jobs", content=j(job_class="urgent_inference"), headers=headers)
        assert r.status_code == 403
        assert r.json() == {
            "error": "job_class: tenant_member of tenant 'suwon' is not entitled to class urgent_inference",
            "field": "job_class",
        }


def test_streamed_body_over_the_limit_is_413(pair: Pair) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"image": "a", "job_class": "training", "command": ["'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"]}'

    headers = _headers(pair, "suwon-user", "application/json")
    jobs = pair.server.store.count_jobs()
    for client in (pair.fast, pair.slow):
        r = client.post("/api/v1/jobs", content=chunks(), headers=headers)
        assert r.status_code == 413
        assert r.json() == {"error": f"request body larger than {LIMIT} bytes", "field": "body"}
    assert pair.server.store.count_jobs() == jobs


def test_fast_path_does_not_reach_the_router(pair: Pair) -> None:
    """Valid submits and the errors it owns never reach the wrapped app; everything else does."""
    reached: list[str] = []

    async def router(scope: Any, receive: Any, send: Any) -> None:
        reached.append(f"{scope['method']} {scope['path']}")
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": body})

    client = TestClient(SubmitFastPath(router, pair.server.service, LIMIT))
    ok = client.post("/api/v1/jobs", json=spec(), headers=_headers(pair, "suwon-user", None))
    assert ok.status_code == 201
    bad = client.post("/api/v1/jobs", json=spec(job_class="x"), headers=_headers(pair, "suwon-user", None))
    assert bad.status_code == 400
    assert client.post("/api/v1/jobs", json=spec()).status_code == 401
    assert reached == []
    # Delegated: other routes and methods, other content types, bodies that are not a JSON object
    # (replayed unchanged to the router).
    assert client.get("/api/v1/jobs").status_code == 299
    assert client.post("/api/v1/jobs/", json=spec()).status_code == 299
    r = client.post("/api/v1/jobs", content=b"{not json", headers=JSON)
    assert r.status_code == 299 and r.content == b"{not json"
    assert client.post("/api/v1/jobs", content=b"{}", headers={"content-type": "text/plain"}).status_code == 299
    assert reached == ["GET /api/v1/jobs", "POST /api/v1/jobs/", "POST /api/v1/jobs", "POST /api/v1/jobs"]


def test_store_failure_is_a_500_on_both_paths(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(job: Any, event: Any) -> Future[None]:
        fut: Future[None] = Future()
        fut.set_exception(OSError("disk full"))
        return fut

    monkeypatch.setattr(pair.server.store, "insert_job", failing)
    headers = _headers(pair, "suwon-user", "application/json")
    answers = []
    for app in (pair.fast.app, pair.slow.app):
        client = TestClient(app, raise_server_exceptions=False)
        r = client.post("/api/v1/jobs", content=j(), headers=headers)
        answers.append((r.status_code, r.text, r.headers["content-type"]))
        with pytest.raises(OSError, match="disk full"):  # and raised for the server to log
            TestClient(app).post("/api/v1/jobs", content=j(), headers=headers)
    assert answers[0] == answers[1] == (500, "Internal Server Error", "text/plain; charset=utf-8")
