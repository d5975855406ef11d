"""The ``gpunas-scheduler`` command line: configuration, local administration, HTTP client, simulate."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.env import Spawned, free_port, spawn_server, write_config

from gpunas_scheduler.app import settings_from
from gpunas_scheduler.cli import app
from gpunas_scheduler.config import Config, load_config
from gpunas_scheduler.domain.model import JobClass
from gpunas_scheduler.service.convert import ClassLimits
from gpunas_scheduler.service.core import ClassAccess
from gpunas_scheduler.service.records import Role

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_check_config_accepts_a_valid_file_and_hides_passwords(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('database_url = "postgresql+psycopg://sched:s3cret@db.example/sched"\nlisten_port = 9000\n')
    code, out = cli("check-config", "--config", str(cfg))
    assert code == 0, out
    assert "configuration is valid" in out
    assert "s3cret" not in out
    assert "9000" in out


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("listen_port = 0\n", "listen_port"),
        ('database_url = "sqlite:///relative.db"\n', "database_url"),
        ('database_url = "mysql://u@h/db"\n', "database_url"),
        ("schedule_interval_s = 0\n", "schedule_interval_s"),
        ("surprise = 1\n", "surprise"),
        ('tls_cert_file = "/nonexistent.pem"\n', "tls_key_file"),
        ("listen_port = [\n", "not valid TOML"),
        ("[classes.urgent]\ntenants = []\n", "classes.urgent"),
        ('[classes.training]\nroles = ["agent"]\n', "classes.training.roles"),
        ('[classes.training]\ntenants = ["Bad Name"]\n', "classes.training.tenants"),
        ("[classes.training]\nmax_min_runtime_s = 31536000\n", "classes.training.max_min_runtime_s"),
        ('[tenant_nas_paths]\nsuwon = ["tank/../etc"]\n', "tenant_nas_paths.suwon.0"),
        ('[tenant_nas_paths]\nsuwon = ["/etc"]\n', "tenant_nas_paths.suwon.0"),
        ('[tenant_nas_paths]\n"Bad Tenant" = ["tank"]\n', "tenant_nas_paths"),
    ],
)
def test_check_config_names_the_bad_field(tmp_path: Path, content: str, field: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    code, out = cli("check-config", "--config", str(cfg))
    assert code == 2
    assert field in out


def test_example_configuration_entitles_urgent_inference_narrowly() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "config.example.toml"
    code, out = cli("check-config", "--config", str(example))
    assert code == 0, out
    access = settings_from(load_config(example)).class_access
    assert access[JobClass.URGENT_INFERENCE] == ClassAccess(
        tenants=frozenset({"suwon", "seongnam"}), roles=frozenset({Role.TENANT_ADMIN})
    )
    assert JobClass.TRAINING not in access
    limits = settings_from(load_config(example)).class_limits
    assert limits[JobClass.TRAINING] == ClassLimits(max_min_runtime_s=600, max_checkpoint_grace_s=600)
    assert settings_from(load_config(None)).class_access == {JobClass.URGENT_INFERENCE: ClassAccess(frozenset())}


def test_check_config_missing_file(tmp_path: Path) -> None:
    code, out = cli("check-config", "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "no such file" in out


def test_database_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("listen_port = 9001\n")
    monkeypatch.setenv("GPUNAS_SCHEDULER_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    code, out = cli("migrate", "--config", str(cfg))
    assert code == 0, out
    assert (tmp_path / "env.db").exists()


def test_migrate_is_idempotent_and_admin_commands(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", free_port())
    code, out = cli("jobs", "list", "--token", "x", "--url", "http://127.0.0.1:1")
    assert code == 1 and "cannot reach" in out
    code, out = cli("admin", "tenant-set", "suwon", "--config", str(cfg))
    assert code == 3 and "migrate" in out
    assert cli("migrate", "--config", str(cfg)) == (0, "schema: empty -> 0004\n")
    assert cli("migrate", "--config", str(cfg)) == (0, "schema already at 0004\n")
    code, out = cli("admin", "tenant-set", "suwon", "--config", str(cfg), "--gpu-hours-per-month", "100")
    assert code == 0 and "tenant suwon saved" in out
    code, out = cli("admin", "user-add", "alice", "--role", "tenant_member", "--tenant", "suwon", "--config", str(cfg))
    assert code == 0, out
    code, out = cli("admin", "user-add", "bob", "--role", "wizard", "--config", str(cfg))
    assert code == 2 and "role" in out
    code, out = cli(
        "admin", "user-add", "carol", "--role", "tenant_member", "--tenant", "nowhere", "--config", str(cfg)
    )
    assert code == 1 and "nowhere" in out
    token_file = tmp_path / "alice.token"
    code, out = cli("admin", "token-create", "alice", "--config", str(cfg), "--output", str(token_file))
    assert code == 0, out
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token.startswith("gpn_")
    code, out = cli("admin", "token-list", "--config", str(cfg))
    assert code == 0 and "alice" in out and token.split("_", 2)[2] not in out
    code, out = cli("admin", "token-revoke", token.split("_")[1], "--config", str(cfg))
    assert code == 0 and "revoked" in out


@dataclass
class Live:
    server: Spawned
    user: str
    admin: str
    agent: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("cli-live")
    port = free_port()
    cfg = write_config(tmp, f"sqlite:///{tmp / 'live.db'}", port)
    assert cli("migrate", "--config", str(cfg))[0] == 0
    tokens = {}
    for user, role, tenant in (
        ("alice", "tenant_member", "suwon"),
        ("root", "platform_admin", None),
        ("node-a", "agent", None),
    ):
        if tenant:
            assert cli("admin", "tenant-set", tenant, "--config", str(cfg))[0] == 0
        extra = ["--tenant", tenant] if tenant else []
        assert cli("admin", "user-add", user, "--role", role, *extra, "--config", str(cfg))[0] == 0
        code, out = cli("admin", "token-create", user, "--config", str(cfg))
        assert code == 0
        tokens[user] = out.strip()
    server = spawn_server(cfg, port, tmp / "server.log")
    try:
        yield Live(server, tokens["alice"], tokens["root"], tokens["node-a"])
    finally:
        server.stop()


def test_user_commands_over_http(live: Live) -> None:
    url = ["--url", live.server.url]
    me = ["--token", live.user, *url]
    code, out = cli("whoami", *me)
    assert (code, out.strip()) == (0, "alice (tenant_member, tenant suwon)")
    # Options go before the image; after it, even "--gpus 8" belongs to the job's command.
    code, out = cli("jobs", "submit", "--gpus", "2", "-e", "EPOCHS=3", *me, "pytorch:1", "train.py", "--gpus", "8")
    assert code == 0, out
    job_id = out.split()[1]
    code, out = cli("jobs", "list", *me)
    assert code == 0 and job_id[:6] in out
    code, out = cli("jobs", "get", job_id, "--json", *me)
    assert code == 0 and '"EPOCHS": "3"' in out
    assert '"gpus": 2' in out and '"train.py",\n      "--gpus",\n      "8"' in out
    code, out = cli("jobs", "events", job_id, *me)
    assert code == 0 and "submitted" in out
    code, out = cli("jobs", "submit", "--class", "nope", *me, "pytorch:1")
    assert code == 1 and "HTTP 400" in out and "body.job_class" in out
    code, out = cli("jobs", "submit", "-e", "NOEQUALS", *me, "pytorch:1")
    assert code == 2 and "KEY=VALUE" in out
    code, out = cli("jobs", "cancel", job_id, *me)
    assert code == 0 and "cancelled" in out
    code, out = cli("tenants", "usage", "suwon", *me)
    assert code == 0 and "API calls today" in out
    code, out = cli("tenants", "list", *me)
    assert code == 0 and "suwon" in out
    code, out = cli("jobs", "list", "--token", "gpn_0000000000000000_" + "a" * 43, *url)
    assert code == 1 and "HTTP 401" in out
    code, out = cli("jobs", "list", *url, "--token", "")
    assert code == 2 and "GPUNAS_TOKEN" in out


def test_admin_commands_over_http(live: Live) -> None:
    import httpx

    node = {"cpu_milli": 64000, "memory_mib": 512000, "gpus": [{"index": 0, "memory_mib": 81920}]}
    r = httpx.put(
        live.server.url + "/api/v1/nodes/node-a", json=node, headers={"Authorization": f"Bearer {live.agent}"}
    )
    assert r.status_code == 200
    admin = ["--token", live.admin, "--url", live.server.url]
    code, out = cli("nodes", "drain", "node-a", *admin)
    assert (code, out.strip()) == (0, "node node-a drained")
    code, out = cli("nodes", "list", *admin)
    assert code == 0 and "drained" in out
    code, out = cli("nodes", "undrain", "node-a", *admin)
    assert (code, out.strip()) == (0, "node node-a schedulable")
    code, out = cli("nodes", "drain", "node-a", "--token", live.user, "--url", live.server.url)
    assert code == 1 and "HTTP 403" in out


def test_simulate_runs_the_simulator(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "submit_time,duration,gpus,tenant,class\n"
        + "".join(
            f"{i * 10},{600 + i},{1 + i % 4},{('a', 'b')[i % 2]},{('training', 'inference')[i % 2]}\n"
            for i in range(40)
        )
    )
    code, out = cli("simulate", "--csv", str(trace), "--nodes", "2x8", "--json")
    assert code == 0, out
    assert out.count("\n") >= 3


# Run the console script's entry point and report, at exit, the top-level packages it imported.
_IMPORTS_PROBE = """
import atexit, sys
top = lambda: " ".join(sorted({m.split(".")[0] for m in sys.modules}))
atexit.register(lambda: sys.stderr.write("IMPORTED " + top() + "\\n"))
sys.argv[0] = "gpunas-scheduler"
from gpunas_scheduler.cli import main
main()
"""
SERVER_STACK = {
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "httpx",
    "pydantic",
    "typer",
}


def test_client_commands_do_not_import_the_server_stack(live: Live) -> None:
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE, "jobs", "submit", "--token", live.user, "--url", live.server.url, "x:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "submitted" in res.stdout
    imported = set(res.stderr.rsplit("IMPORTED ", 1)[1].split())
    assert imported & SERVER_STACK == set()


def test_tenant_nas_paths_reach_the_service(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[tenant_nas_paths]\nsuwon = ["tank/suwon", "archive/shared"]\n')
    code, out = cli("check-config", "--config", str(cfg))
    assert code == 0, out
    settings = settings_from(load_config(cfg))
    assert settings.tenant_nas_paths == {"suwon": ("tank/suwon", "archive/shared")}
    assert settings_from(Config()).tenant_nas_paths == {}
