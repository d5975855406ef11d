"""Schema-driven fuzzing of the whole API (schemathesis against our own OpenAPI): no 5xx, and every
answer, errors included, has a status and a body the document declares."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from support.env import seed_service, whole_gpu_node

from gpunas_scheduler.api.app import create_app
from gpunas_scheduler.app import build
from gpunas_scheduler.config import Config
from gpunas_scheduler.store import migrate

TOKENS: dict[str, str] = {}
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    server = build(Config(database_url=f"sqlite:///{db}"), run_loop=False)
    migrate.upgrade(server.store.engine)
    TOKENS.update(seed_service(server.service))
    svc = server.service
    svc.register_node(svc.admit(TOKENS["node-a"]), "node-a", whole_gpu_node(4))
    # The app without the server's lifespan: schemathesis runs every ASGI call as a fresh client
    # session, and the lifespan's shutdown would close the store after the first one.
    app = create_app(svc, ready=dict)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema
    server.store.close()


_DOC = json.loads((Path(__file__).resolve().parents[2] / "openapi.json").read_text())
# Negative generation needs something to break: operations without parameters or body get only
# positive cases.
OPERATIONS = [
    (method.upper(), path, mode)
    for path, item in _DOC["paths"].items()
    for method, op in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or op.get("parameters") or op.get("requestBody")
]


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g}" for m, p, g in OPERATIONS])
def test_no_server_errors(fuzz_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = fuzz_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        # The same generated request as a platform admin, a tenant admin and a node agent.
        for user in ("root", "suwon-admin", "node-a"):
            response = case.call(headers={"Authorization": f"Bearer {TOKENS[user]}"})
            assert response.status_code < 500, (user, case.path_parameters, case.query, case.body, response.text[:300])
            # Every answer, errors included, is one the document declares, in the declared shape.
            case.validate_response(response, checks=CONFORMANCE)

    check()


def test_fuzz_database_is_still_consistent(tmp_path: Path) -> None:
    """A sanity check that fuzzing leaves a database other tests could read: open and migrate again."""
    server = build(Config(database_url=f"sqlite:///{tmp_path / 'again.db'}"), run_loop=False)
    migrate.upgrade(server.store.engine)
    assert migrate.current(server.store.engine) == migrate.head()
    server.store.close()
