"""Against real server processes: end-to-end, kill -9 during a submit burst, two servers on one
PostgreSQL database with one leader and fail-over from a hung (SIGSTOP) leader."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from support.env import PgCluster, Spawned, free_port, run_cli, spawn_server, wait_for, whole_gpu_node, write_config

SUBMIT = {"image": "pytorch:1", "job_class": "training", "resources": {"gpus": 1}}


def bootstrap(config: Path) -> dict[str, str]:
    """Tenant, user, admin and agent created with the CLI, tokens returned."""
    assert run_cli("migrate", "--config", str(config)).returncode == 0
    steps = [
        ("admin", "tenant-set", "suwon", "--api-calls-per-day", "1000000"),
        ("admin", "user-add", "alice", "--role", "tenant_member", "--tenant", "suwon"),
        ("admin", "user-add", "root", "--role", "platform_admin"),
        ("admin", "user-add", "node-a", "--role", "agent"),
    ]
    for step in steps:
        res = run_cli(*step, "--config", str(config))
        assert res.returncode == 0, res.stderr
    tokens = {}
    for user in ("alice", "root", "node-a"):
        res = run_cli("admin", "token-create", user, "--config", str(config))
        assert res.returncode == 0, res.stderr
        tokens[user] = res.stdout.strip()
    return tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_spawned_server_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.db'}", port)
    tokens = bootstrap(cfg)
    srv = spawn_server(cfg, port, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            r = c.put("/api/v1/nodes/node-a", json=whole_gpu_node(2), headers=auth(tokens["node-a"]))
            assert r.status_code == 200, r.text
            jid = c.post("/api/v1/jobs", json=SUBMIT, headers=auth(tokens["alice"])).json()["id"]

            def state() -> str:
                return str(c.get(f"/api/v1/jobs/{jid}", headers=auth(tokens["alice"])).json()["state"])

            wait_for(lambda: state() != "pending", "the job to leave pending")
            assert state() == "running"
            assert c.get("/readyz").json()["detail"]["leader"] is True
    finally:
        # uvicorn re-raises the signal after its graceful shutdown, hence -SIGTERM.
        assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.log.read_text()


def test_kill_9_during_submit_burst_loses_no_acknowledged_job(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}", port)
    tokens = bootstrap(cfg)
    srv = spawn_server(cfg, port, tmp_path / "server.log")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst() -> None:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            while not stop.is_set():
                try:
                    r = c.post("/api/v1/jobs", json=SUBMIT, headers=auth(tokens["alice"]))
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    with lock:
                        acked.append(r.json()["id"])

    workers = [threading.Thread(target=burst) for _ in range(8)]
    for w in workers:
        w.start()
    # Kill in the middle of the burst, once enough submits were acknowledged to mean something
    # (how long that takes depends on the machine's load).
    deadline = time.monotonic() + 60
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=10)
    stop.set()
    for w in workers:
        w.join(timeout=10)
    assert len(acked) >= 200, f"burst too small to mean anything: {len(acked)}"

    srv2 = spawn_server(cfg, port, tmp_path / "server2.log")
    try:
        with httpx.Client(base_url=srv2.url, timeout=30) as c:
            seen: set[str] = set()
            before = None
            while True:
                params: dict[str, str | int] = {"limit": 1000}
                if before:
                    params["before"] = before
                page = c.get("/api/v1/jobs", params=params, headers=auth(tokens["root"])).json()
                seen.update(j["id"] for j in page["jobs"])
                before = page["next_before"]
                if not before:
                    break
        missing = set(acked) - seen
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged jobs lost"
    finally:
        srv2.stop()


def test_two_servers_on_postgresql_fail_over_from_a_hung_leader(tmp_path: Path, pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("twoservers")
    ports = [free_port(), free_port()]
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    cfgs = [write_config(d, url, p) for d, p in zip(dirs, ports)]
    tokens = bootstrap(cfgs[0])
    servers = [spawn_server(c, p, d / "server.log") for c, p, d in zip(cfgs, ports, dirs)]
    try:

        def is_leader(server: Spawned) -> bool:
            return bool(httpx.get(server.url + "/readyz").json()["detail"]["leader"])

        def leader_flags() -> list[bool] | None:
            flags = [is_leader(s) for s in servers]
            return flags if any(flags) else None

        def running(url: str, *ids: str) -> bool:
            jobs = [httpx.get(f"{url}/api/v1/jobs/{jid}", headers=auth(tokens["alice"])).json() for jid in ids]
            return all(job["state"] == "running" for job in jobs)

        leaders = wait_for(leader_flags, "a leader")
        assert sorted(leaders) == [False, True]
        leader, follower = (servers[0], servers[1]) if leaders[0] else (servers[1], servers[0])
        # Both accept submits; only the leader schedules, and a follower's submit is scheduled too.
        httpx.put(follower.url + "/api/v1/nodes/node-a", json=whole_gpu_node(4), headers=auth(tokens["node-a"]))
        ids = [
            httpx.post(s.url + "/api/v1/jobs", json=SUBMIT, headers=auth(tokens["alice"])).json()["id"]
            for s in (leader, follower)
        ]
        wait_for(lambda: running(follower.url, *ids), "both jobs running")
        leader.proc.send_signal(signal.SIGSTOP)  # hung, its database session still open
        try:
            wait_for(lambda: is_leader(follower), "the other server to take the lease over")
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: not is_leader(leader), "the resumed old leader to see that it lost the lease")
        httpx.post(follower.url + "/api/v1/nodes/node-a/heartbeat", json={}, headers=auth(tokens["node-a"]))
        late = httpx.post(follower.url + "/api/v1/jobs", json=SUBMIT, headers=auth(tokens["alice"])).json()["id"]
        wait_for(lambda: running(follower.url, late), "the job submitted after failover running")
    finally:
        for s in servers:
            s.stop()


def test_tls(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    cfg = write_config(
        tmp_path, f"sqlite:///{tmp_path / 'tls.db'}", port, tls_cert_file=str(cert), tls_key_file=str(key)
    )
    tokens = bootstrap(cfg)
    srv = spawn_server(cfg, port, tmp_path / "server.log", ca=cert)
    try:
        import ssl

        trusted = ssl.create_default_context(cafile=str(cert))
        me = httpx.get(srv.url + "/api/v1/whoami", headers=auth(tokens["alice"]), verify=trusted)
        assert me.json()["user"] == "alice"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/healthz", timeout=3)  # the system CAs do not trust the test certificate
    finally:
        srv.stop()
