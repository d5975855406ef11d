"""Helpers shared by the service, store, API and CLI tests: clock, seeded tenants, PostgreSQL
throw-away cluster, spawned server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from gpunas_scheduler.service.core import SchedulerService, Settings
from gpunas_scheduler.service.metrics import Metrics
from gpunas_scheduler.service.ports import Store
from gpunas_scheduler.service.records import Role, TenantRecord

# 2026-11-23 10:00:00 UTC, a Monday in the middle of a month.
T0 = 1_795_428_000.0

GIB = 2**30
# Seed 003's tenants and quotas.
SEED_TENANTS = (
    TenantRecord("suwon", 1.0, 10_000, 100.0, 50 * GIB),
    TenantRecord("seongnam", 1.0, 10_000, 100.0, 50 * GIB),
    TenantRecord("yongin", 1.0, 5_000, 50.0, 30 * GIB),
)


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Seeded:
    service: SchedulerService
    clock: FakeClock
    tokens: dict[str, str]


def seed(store: Store, clock: FakeClock, settings: Settings | None = None) -> Seeded:
    """A service on ``store`` with the seed tenants and users (see :func:`seed_service`), all
    tenants entitled to every class unless ``settings`` says otherwise."""
    svc = SchedulerService(store, clock, Metrics(), settings if settings is not None else Settings(class_access={}))
    return Seeded(svc, clock, seed_service(svc))


def seed_service(svc: SchedulerService) -> dict[str, str]:
    """Three tenants; per tenant a member ``<t>-user``, a second member ``<t>-user2`` and an admin
    ``<t>-admin``; a platform admin ``root``; agents ``node-a`` and ``node-b``. Returns tokens."""
    tokens: dict[str, str] = {}
    for t in SEED_TENANTS:
        svc.upsert_tenant(t)
        for name, role in (
            (f"{t.name}-user", Role.TENANT_MEMBER),
            (f"{t.name}-user2", Role.TENANT_MEMBER),
            (f"{t.name}-admin", Role.TENANT_ADMIN),
        ):
            svc.create_user(None, name, role, t.name)
            tokens[name] = svc.issue_token(None, name, 86400).token
    svc.create_user(None, "root", Role.PLATFORM_ADMIN, None)
    tokens["root"] = svc.issue_token(None, "root", 86400).token
    for node in ("node-a", "node-b"):
        svc.create_user(None, node, Role.AGENT, None)
        tokens[node] = svc.issue_token(None, node, 86400).token
    return tokens


def whole_gpu_node(gpus: int = 8, memory_mib: int = 81920, nvlink: bool = True) -> dict[str, object]:
    return {
        "cpu_milli": 128_000,
        "memory_mib": 1_024_000,
        "gpus": [
            {"index": i, "memory_mib": memory_mib, "mode": "whole", "nvlink_group": 0 if nvlink else None}
            for i in range(gpus)
        ],
    }


def job_spec(job_class: str = "training", **resources: object) -> dict[str, object]:
    res: dict[str, object] = {"gpus": 1, "cpu_milli": 1000, "memory_mib": 1024}
    res.update(resources)
    return {
        "image": "nvcr.io/nvidia/pytorch:24.05-py3",
        "command": ["python", "train.py"],
        "env": {},
        "job_class": job_class,
        "resources": res,
        "max_runtime_s": None,
        "min_runtime_s": 0,
        "checkpoint_signal": "SIGUSR1",
        "checkpoint_grace_s": 60,
        "service": None,
        "mounts": [],
        "name": None,
    }


# ------------------------------------------------------------------ PostgreSQL
@dataclass
class PgCluster:
    socket_dir: str
    port: int

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@/{db}?host={self.socket_dir}&port={self.port}"

    def create_database(self, db: str) -> str:
        import psycopg

        with psycopg.connect(
            host=self.socket_dir, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        return self.url(db)


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        for d in sorted(base.iterdir(), reverse=True):
            if (d / "bin" / "pg_ctl").exists():
                return d / "bin"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A throw-away PostgreSQL cluster from Debian's binaries, on a private socket and port."""
    bindir = _pg_bindir()
    if bindir is None:
        msg = "PostgreSQL server binaries not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    root = tempfile.mkdtemp(prefix="gpunas-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.mkdir(sock)
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
        check=True,
        capture_output=True,
    )
    opts = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=on"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", data, "-o", opts, "-w", "-l", os.path.join(root, "log"), "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PgCluster(sock, port)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


T = TypeVar("T")


# --------------------------------------------------------------- spawned server
@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    url: str
    config: Path
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def cli_bin() -> str:
    return str(Path(sys.executable).with_name("gpunas-scheduler"))


def write_config(tmp: Path, db_url: str, port: int, **extra: object) -> Path:
    lines = [f'database_url = "{db_url}"', f"listen_port = {port}", "schedule_interval_s = 0.1", "leader_lease_s = 1.0"]
    for k, v in extra.items():
        lines.append(f"{k} = {v!r}" if not isinstance(v, bool) else f"{k} = {str(v).lower()}")
    cfg = tmp / "config.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def spawn_server(config: Path, port: int, log: Path, ca: Path | None = None) -> Spawned:
    """Start ``gpunas-scheduler serve``; with ``ca`` it serves HTTPS with a certificate from it."""
    fh = open(log, "ab")  # noqa: SIM115 - handed to the child for its lifetime
    proc = subprocess.Popen([cli_bin(), "serve", "--config", str(config)], stdout=fh, stderr=subprocess.STDOUT)
    url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            verify = ssl.create_default_context(cafile=str(ca)) if ca else True
            if httpx.get(url + "/readyz", timeout=1, verify=verify).status_code == 200:
                return Spawned(proc, url, config, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not become ready: {log.read_text()[-2000:]}")


def wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = 30.0) -> T:
    """Poll ``probe`` until it returns something other than None or False; fail naming ``what``.

    Spawned servers schedule every 0.1 s, but on a loaded machine a fixed sleep is not enough."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got is not None and got is not False:
            return got
        if time.monotonic() >= deadline:
            pytest.fail(f"after {timeout_s:.0f} s still waiting for {what}")
        time.sleep(0.1)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_bin(), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )
