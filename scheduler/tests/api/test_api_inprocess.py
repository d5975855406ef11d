"""The HTTP API through an in-process client, wired by the composition root on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.env import job_spec, seed_service, whole_gpu_node

from gpunas_scheduler.app import Server, build
from gpunas_scheduler.config import Config
from gpunas_scheduler.store import migrate

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.json"


@dataclass
class Api:
    client: TestClient
    server: Server
    tokens: dict[str, str]

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    cfg = Config(database_url=f"sqlite:///{tmp_path / 'api.db'}", max_body_bytes=8192)
    server = build(cfg, run_loop=False)
    migrate.upgrade(server.store.engine)
    tokens = seed_service(server.service)
    with TestClient(server.app) as client:
        yield Api(client, server, tokens)


def body(**over: object) -> dict[str, object]:
    spec = {k: v for k, v in job_spec().items() if v is not None}
    spec.update(over)
    return spec


def test_openapi_document_is_in_sync() -> None:
    from gpunas_scheduler.api.app import create_app
    from gpunas_scheduler.service.core import SchedulerService
    from gpunas_scheduler.service.metrics import Metrics
    from gpunas_scheduler.service.ports import system_clock
    from gpunas_scheduler.store.memory import MemoryStore

    live = create_app(SchedulerService(MemoryStore(), system_clock, Metrics()), ready=dict).openapi()
    committed = json.loads(OPENAPI.read_text())
    assert live == committed, "scheduler/openapi.json is stale: run 'gpunas-scheduler openapi > openapi.json'"
    assert "422" not in json.dumps(committed["paths"]), "validation errors are documented as 400"


def test_served_openapi_matches(api: Api) -> None:
    assert api.client.get("/openapi.json").json() == json.loads(OPENAPI.read_text())


def test_health_and_readiness(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok", "detail": {}}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["detail"]["schema"] == migrate.head()


def test_readiness_fails_before_migration(tmp_path: Path) -> None:
    server = build(Config(database_url=f"sqlite:///{tmp_path / 'empty.db'}"), run_loop=False)
    with TestClient(server.app) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    assert "gpunas-scheduler migrate" in r.json()["detail"]["error"]


def test_every_api_route_requires_a_token(api: Api) -> None:
    for route in api.client.get("/openapi.json").json()["paths"]:
        if not route.startswith("/api/"):
            continue
        path = route.replace("{job_id}", "0" * 22).replace("{name}", "x").replace("{token_id}", "0" * 16)
        for method in ("get", "post", "put"):
            r = api.client.request(method, path, json={})
            assert r.status_code in (401, 405), (method, path, r.status_code)
            assert set(r.json()) == {"error", "field"}, (method, path, r.text)  # ErrorOut, not {"detail": ...}
            if r.status_code == 401:
                assert r.headers["www-authenticate"] == "Bearer"
    bad = api.client.get("/api/v1/whoami", headers={"Authorization": "Bearer gpn_0000000000000000_" + "a" * 43})
    assert bad.status_code == 401


def test_submit_get_list_events_cancel(api: Api) -> None:
    c = api.client
    r = c.post("/api/v1/jobs", json=body(name="resnet", env={"EPOCHS": "3"}), headers=api.h("suwon-user"))
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    assert r.json()["tenant"] == "suwon" and r.json()["state"] == "pending"
    got = c.get(f"/api/v1/jobs/{jid}", headers=api.h("suwon-user")).json()
    assert got["name"] == "resnet" and got["spec"]["env"] == {"EPOCHS": "3"} and got["job_class"] == "training"
    listed = c.get("/api/v1/jobs", params={"state": ["pending"]}, headers=api.h("suwon-user")).json()
    assert [j["id"] for j in listed["jobs"]] == [jid] and listed["next_before"] is None
    assert c.get(f"/api/v1/jobs/{jid}", headers=api.h("yongin-user")).status_code == 404
    assert c.get("/api/v1/jobs", headers=api.h("yongin-user")).json()["jobs"] == []
    assert c.get("/api/v1/jobs", params={"tenant": "suwon"}, headers=api.h("yongin-user")).status_code == 403
    assert c.post(f"/api/v1/jobs/{jid}/cancel", headers=api.h("suwon-user2")).status_code == 403
    cancelled = c.post(f"/api/v1/jobs/{jid}/cancel", headers=api.h("suwon-user"))
    assert cancelled.json()["state"] == "cancelled"
    assert c.post(f"/api/v1/jobs/{jid}/cancel", headers=api.h("suwon-user")).status_code == 409
    events = c.get(f"/api/v1/jobs/{jid}/events", headers=api.h("suwon-admin")).json()
    assert [e["kind"] for e in events] == ["submitted", "cancelled"]


def test_pagination(api: Api) -> None:
    ids = [api.client.post("/api/v1/jobs", json=body(), headers=api.h("suwon-user")).json()["id"] for _ in range(5)]
    page1 = api.client.get("/api/v1/jobs", params={"limit": 2}, headers=api.h("suwon-user")).json()
    page2 = api.client.get(
        "/api/v1/jobs", params={"limit": 2, "before": page1["next_before"]}, headers=api.h("suwon-user")
    ).json()
    assert [j["id"] for j in page1["jobs"] + page2["jobs"]] == sorted(ids, reverse=True)[:4]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(resources={"gpus": -1}), "body.resources.gpus"),
        (body(job_class="batch"), "body.job_class"),
        (body(image="bad image"), "body.image"),
        (body(command=["ok", "nul\x00byte"]), "body.command.1"),
        (body(env={"1BAD": "x"}), "body.env.1BAD.[key]"),
        (body(surprise=1), "body.surprise"),
        (body(checkpoint_grace_s=99999), "body.checkpoint_grace_s"),
        (body(mounts=[{"source": "tank/shared", "target": "relative"}]), "body.mounts.0.target"),
        (body(resources={"gpus": 1, "gpu_share_milli": 300}), "resources.gpu_memory_mib"),
        (body(max_runtime_s=100_000), "max_runtime_s"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(api: Api, payload: dict[str, object], field: str) -> None:
    r = api.client.post("/api/v1/jobs", json=payload, headers=api.h("suwon-user"))
    assert r.status_code == 400, r.text
    data = r.json()
    named = [f["field"] for f in data.get("fields", [])] + [data.get("field")]
    assert field in named, data
    assert api.server.store.count_jobs() == 0


def test_malformed_json_is_400(api: Api) -> None:
    r = api.client.post(
        "/api/v1/jobs", content=b"{not json", headers={**api.h("suwon-user"), "content-type": "application/json"}
    )
    assert r.status_code == 400


def test_body_size_limit(api: Api) -> None:
    big = body(command=["x" * 4000, "y" * 4000, "z" * 4000])
    r = api.client.post("/api/v1/jobs", json=big, headers=api.h("suwon-user"))
    assert r.status_code == 413
    assert "8192" in r.json()["error"]

    def chunks() -> Iterator[bytes]:
        yield b'{"image": "a", "job_class": "training", "command": ["'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"]}'

    streamed = api.client.post(
        "/api/v1/jobs", content=chunks(), headers={**api.h("suwon-user"), "content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_api_call_quota_is_429(api: Api) -> None:
    root = api.h("root")
    r = api.client.put("/api/v1/tenants/yongin", json={"api_calls_per_day": 3}, headers=root)
    assert r.status_code == 200 and r.json()["api_calls_per_day"] == 3
    codes = [api.client.get("/api/v1/whoami", headers=api.h("yongin-user")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    usage = api.client.get("/api/v1/tenants/yongin/usage", headers=root).json()
    assert usage["api_calls_today"] == 3 and usage["ratios"]["api_calls_per_day"] == 1.0


def test_tenants_users_tokens(api: Api) -> None:
    c = api.client
    assert [t["name"] for t in c.get("/api/v1/tenants", headers=api.h("suwon-user")).json()] == ["suwon"]
    assert len(c.get("/api/v1/tenants", headers=api.h("root")).json()) == 3
    assert c.put("/api/v1/tenants/new", json={}, headers=api.h("suwon-admin")).status_code == 403
    assert c.get("/api/v1/tenants/yongin/usage", headers=api.h("suwon-admin")).status_code == 404
    u = c.post(
        "/api/v1/users",
        json={"name": "suwon-bob", "role": "tenant_member", "tenant": "suwon"},
        headers=api.h("suwon-admin"),
    )
    assert u.status_code == 201
    t = c.post("/api/v1/tokens", json={"user": "suwon-bob", "ttl_s": 3600}, headers=api.h("suwon-admin"))
    assert t.status_code == 201
    token = t.json()["token"]
    me = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"user": "suwon-bob", "role": "tenant_member", "tenant": "suwon"}
    listed = c.get("/api/v1/tokens", headers=api.h("suwon-admin")).json()
    assert t.json()["id"] in [x["id"] for x in listed]
    assert "token" not in listed[0]
    assert c.post(f"/api/v1/tokens/{t.json()['id']}/revoke", headers=api.h("yongin-admin")).status_code == 403
    assert c.post(f"/api/v1/tokens/{t.json()['id']}/revoke", headers=api.h("suwon-admin")).status_code == 200
    assert c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_nodes_agent_flow_and_drain(api: Api) -> None:
    c = api.client
    r = c.put("/api/v1/nodes/node-a", json=whole_gpu_node(2), headers=api.h("node-a"))
    assert r.status_code == 200, r.text
    assert c.put("/api/v1/nodes/node-a", json=whole_gpu_node(2), headers=api.h("node-b")).status_code == 403
    jid = c.post("/api/v1/jobs", json=body(), headers=api.h("suwon-user")).json()["id"]
    api.server.loop.run_once()
    [work] = c.get("/api/v1/nodes/node-a/assignments", headers=api.h("node-a")).json()
    assert work["job"]["id"] == jid and work["action"] == "run"
    assert c.get("/api/v1/nodes/node-a/assignments", headers=api.h("node-b")).status_code == 403
    assert c.post(f"/api/v1/jobs/{jid}/report", json={"status": "started"}, headers=api.h("node-a")).status_code == 200
    hb = c.post("/api/v1/nodes/node-a/heartbeat", json={"utilization": {"0": 0.9}}, headers=api.h("node-a"))
    assert hb.json()["gpus"][0]["utilization"] == 0.9
    nodes = c.get("/api/v1/nodes", headers=api.h("suwon-user")).json()
    assert nodes[0]["allocated_gpu_units"] == 1.0 and nodes[0]["jobs"] == [jid]
    assert c.post("/api/v1/admin/nodes/node-a/drain", headers=api.h("suwon-admin")).status_code == 403
    assert c.post("/api/v1/admin/nodes/node-a/drain", headers=api.h("root")).json()["drained"] is True
    assert c.post("/api/v1/admin/nodes/node-a/undrain", headers=api.h("root")).json()["drained"] is False
    assert c.post("/api/v1/admin/nodes/nowhere/drain", headers=api.h("root")).status_code == 404
    done = c.post(f"/api/v1/jobs/{jid}/report", json={"status": "succeeded", "exit_code": 0}, headers=api.h("node-a"))
    assert done.json()["state"] == "succeeded"


def _node(answer: Any) -> dict[str, Any]:
    """The node of a ``GET /nodes`` (one node registered) or ``GET /nodes/{name}`` answer."""
    return answer[0] if isinstance(answer, list) else answer


def test_job_ids_of_other_tenants_cannot_be_seen_or_probed(api: Api) -> None:
    c = api.client
    assert c.put("/api/v1/nodes/node-a", json=whole_gpu_node(2), headers=api.h("node-a")).status_code == 200
    mine = c.post("/api/v1/jobs", json=body(), headers=api.h("suwon-user")).json()["id"]
    theirs = c.post("/api/v1/jobs", json=body(), headers=api.h("yongin-user")).json()["id"]
    api.server.loop.run_once()
    for path in ("/api/v1/nodes", "/api/v1/nodes/node-a"):
        member = _node(c.get(path, headers=api.h("suwon-user")).json())
        assert member["jobs"] == [mine] and member["allocated_gpu_units"] == 2.0
        for who in ("root", "node-a"):
            assert sorted(_node(c.get(path, headers=api.h(who)).json())["jobs"]) == sorted([mine, theirs])
    unknown = "0" * 22
    for who in ("node-b", "suwon-user"):
        answers = []
        for jid in (theirs, unknown):
            r = c.post(f"/api/v1/jobs/{jid}/report", json={"status": "started"}, headers=api.h(who))
            answers.append((r.status_code, r.json()["field"], r.json()["error"].replace(jid, "<id>")))
        assert answers[0] == answers[1] and answers[0][0] == 404, (who, answers)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**whole_gpu_node(2), "gpus": [{"index": 0, "memory_mib": 1}, {"index": 0, "memory_mib": 2}]}, "body.gpus"),
        ({**whole_gpu_node(1), "cpu_milli": "128000"}, "body.cpu_milli"),
        ({**whole_gpu_node(1), "memory_mib": True}, "body.memory_mib"),
    ],
)
def test_node_registration_is_strict(api: Api, payload: dict[str, object], field: str) -> None:
    r = api.client.put("/api/v1/nodes/node-a", json=payload, headers=api.h("node-a"))
    assert r.status_code == 400, r.text
    assert field in [f["field"] for f in r.json()["fields"]]
    assert api.client.get("/api/v1/nodes/node-a", headers=api.h("root")).status_code == 404


def test_metrics_need_platform_admin(api: Api) -> None:
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=api.h("suwon-user")).status_code == 403
    api.client.post("/api/v1/jobs", json=body(), headers=api.h("suwon-user"))
    api.server.loop.run_once()
    text = api.client.get("/metrics", headers=api.h("root")).text
    assert 'gpunas_queue_depth{job_class="training",tenant="suwon"} 1.0' in text
    assert 'gpunas_submits_total{tenant="suwon"} 1.0' in text
