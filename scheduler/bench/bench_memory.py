"""Server memory with 100,000 jobs in the store (target: RSS <= 200 MiB).

Fills a fresh SQLite database with ``--jobs`` jobs, ``--pending`` of them pending and the rest
finished (succeeded, failed or cancelled), registers ``--nodes`` nodes of 8 GPUs, starts
``gpunas-scheduler serve`` on it, lets the scheduling loop run passes while a client pages
through the job list, reads jobs, events, nodes and usage, and reports the server's current and
peak resident set size (VmRSS / VmHWM from /proc). The default run measures two cases: the
realistic one (10,000 pending among 100,000) and the worst case (all 100,000 pending).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def fill(workdir: Path, jobs: int, pending: int, nodes: int) -> tuple[Path, str, str]:
    from gpunas_scheduler.app import build
    from gpunas_scheduler.config import Config
    from gpunas_scheduler.service.core import new_job_id
    from gpunas_scheduler.service.records import EventRecord, JobRecord, Role, TenantRecord
    from gpunas_scheduler.store import migrate

    db = workdir / "memory.db"
    server = build(Config(database_url=f"sqlite:///{db}"), run_loop=False)
    migrate.upgrade(server.store.engine)
    svc = server.service
    for t in ("suwon", "seongnam", "yongin"):
        svc.upsert_tenant(TenantRecord(t))
    svc.create_user(None, "bench-user", Role.TENANT_MEMBER, "suwon")
    svc.create_user(None, "root", Role.PLATFORM_ADMIN, None)
    user_token = svc.issue_token(None, "bench-user", 86400).token
    admin_token = svc.issue_token(None, "root", 86400).token
    admin = svc.admit(admin_token)
    for n in range(nodes):
        svc.register_node(
            admin,
            f"node-{n:03d}",
            {
                "cpu_milli": 256_000,
                "memory_mib": 2_048_000,
                "gpus": [{"index": i, "memory_mib": 81920, "mode": "whole", "nvlink_group": i // 4} for i in range(8)],
            },
        )
    spec = {
        "image": "nvcr.io/nvidia/pytorch:24.05-py3",
        "command": ["python", "train.py", "--config", "configs/resnet50.yaml", "--epochs", "90"],
        "env": {"NCCL_DEBUG": "WARN", "DATASET": "/data/imagenet"},
        "job_class": "training",
        "resources": {"gpus": 8, "gpu_memory_mib": 40000, "cpu_milli": 32000, "memory_mib": 262144},
        "max_runtime_s": None,
        "min_runtime_s": 0,
        "checkpoint_signal": "SIGUSR1",
        "checkpoint_grace_s": 120,
        "service": None,
        "mounts": [{"source": "tank/shared", "target": "/data", "read_only": False}],
        "name": "resnet50",
    }
    tenants = ("suwon", "seongnam", "yongin")
    finished = ("succeeded", "failed", "cancelled")
    now = time.time() - jobs
    futures = []
    for i in range(jobs):
        state = "pending" if i >= jobs - pending else finished[i % 3]
        jid = new_job_id(now + i)
        rec = JobRecord(
            id=jid,
            tenant=tenants[i % 3],
            user="bench-user",
            job_class=1 + i % 4,
            state=state,
            gpus=8,
            submitted_at=now + i,
            spec=spec,
            updated_at=now + i,
            finished_at=None if state == "pending" else now + i,
        )
        futures.append(server.store.insert_job(rec, EventRecord(jid, now + i, "submitted", {"user": "bench-user"})))
    for f in futures:
        f.result()
    server.store.close()
    cfg = workdir / "config.toml"
    cfg.write_text(f'database_url = "sqlite:///{db}"\nlisten_port = 0\nlog_level = "warning"\n')
    return cfg, user_token, admin_token


def run_case(jobs: int, pending: int, nodes: int, seconds: float) -> tuple[int, int, int]:
    import socket

    workdir = Path(tempfile.mkdtemp(prefix="gpunas-bench-mem-"))
    t0 = time.perf_counter()
    cfg, user_token, admin_token = fill(workdir, jobs, pending, nodes)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg.write_text(cfg.read_text().replace("listen_port = 0", f"listen_port = {port}"))
    print(f"  filled {jobs} jobs ({pending} pending) and {nodes} nodes in {time.perf_counter() - t0:.1f}s")
    exe = str(Path(sys.executable).with_name("gpunas-scheduler"))
    proc = subprocess.Popen([exe, "serve", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        user = {"Authorization": f"Bearer {user_token}"}
        admin = {"Authorization": f"Bearer {admin_token}"}
        end = time.monotonic() + seconds
        requests = 0
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.monotonic() < end:
                before = None
                for _ in range(20):
                    params: dict[str, str | int] = {"limit": 1000}
                    if before:
                        params["before"] = before
                    page = c.get("/api/v1/jobs", params=params, headers=admin).json()
                    requests += 1
                    if not page["jobs"]:
                        break
                    jid = page["jobs"][0]["id"]
                    c.get(f"/api/v1/jobs/{jid}", headers=admin)
                    c.get(f"/api/v1/jobs/{jid}/events", headers=admin)
                    requests += 2
                    before = page["next_before"]
                    if not before or time.monotonic() > end:
                        break
                c.get("/api/v1/nodes", headers=admin)
                c.get("/api/v1/tenants/suwon/usage", headers=user)
                requests += 2
        rss, hwm = status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmHWM")
        return rss, hwm, requests
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--pending", type=int, action="append", help="Pending jobs among them (repeatable)")
    ap.add_argument("--nodes", type=int, default=125)
    ap.add_argument("--seconds", type=float, default=20.0, help="Workload time per case")
    args = ap.parse_args()
    cases = args.pending or [10_000, args.jobs]
    worst = 0
    for pending in cases:
        print(f"case: {args.jobs} jobs in the store, {pending} pending, {args.nodes} nodes x 8 GPUs")
        rss, hwm, requests = run_case(args.jobs, pending, args.nodes, args.seconds)
        worst = max(worst, hwm)
        print(
            f"  after {requests} API requests and {args.seconds:.0f}s of scheduling passes: "
            f"RSS {rss / 1024:.1f} MiB, peak RSS {hwm / 1024:.1f} MiB (target <= 200 MiB)"
        )
    return 0 if worst <= 200 * 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
