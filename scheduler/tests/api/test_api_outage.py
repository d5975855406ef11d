"""A database outage answers 503 with Retry-After and the API's error document, on the FastAPI
routes and on the submit fast path alike."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient
from support.env import PgCluster, job_spec, seed_service

from gpunas_scheduler.api.app import create_app
from gpunas_scheduler.app import Server, build
from gpunas_scheduler.config import Config
from gpunas_scheduler.store import migrate

_databases = itertools.count()


@dataclass
class Outage:
    server: Server
    tokens: dict[str, str]
    cut: object


@pytest.fixture
def outage(pg_cluster: PgCluster) -> Iterator[Outage]:
    db = f"outage_{next(_databases)}"
    url = pg_cluster.create_database(db)
    server = build(Config(database_url=url), run_loop=False)
    migrate.upgrade(server.store.engine)
    tokens = seed_service(server.service)

    def cut() -> None:
        """The database stops taking connections and its open sessions end."""
        with psycopg.connect(
            host=pg_cluster.socket_dir, port=pg_cluster.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,))

    try:
        yield Outage(server, tokens, cut)
    finally:
        server.store.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "route"])
def test_a_database_outage_is_503_with_retry_after(outage: Outage, fast: bool) -> None:
    svc = outage.server.service
    client = TestClient(create_app(svc, ready=dict, fast_submit=fast), raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {outage.tokens['suwon-user']}"}
    assert client.get("/api/v1/jobs", headers=auth).status_code == 200  # the token is now cached
    outage.cut()  # type: ignore[operator]
    spec = {k: v for k, v in job_spec().items() if v is not None}
    for r in (client.get("/api/v1/jobs", headers=auth), client.post("/api/v1/jobs", json=spec, headers=auth)):
        assert r.status_code == 503, (r.request.method, r.text)
        assert r.headers["retry-after"].isdigit()
        assert r.json() == {"error": "database unavailable, retry later", "field": None}
