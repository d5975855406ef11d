"""Submit throughput and latency of a real server process over loopback.

Starts ``gpunas-scheduler serve`` on a fresh SQLite database (WAL, synchronous=FULL, group
commit), then:

1. throughput: ``--connections`` keep-alive connections submit back to back for ``--seconds``
   (default 60) and the rate of 201 answers is reported per 10-second window and overall
   (target >= 2,000 jobs/s sustained);
2. latency: an open-loop client sends ``--rate`` requests/s (default 500) for ``--latency-seconds``
   and reports p50/p95/p99 (target p99 <= 20 ms);
3. durability check: every acknowledged id is looked up in the database afterwards.

The client is a minimal HTTP/1.1 client on asyncio streams so that it costs the shared 2 cores as
little as possible; every loop is bounded by time and request count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import uvloop

BODY = json.dumps(
    {
        "image": "nvcr.io/nvidia/pytorch:24.05-py3",
        "command": ["python", "train.py", "--epochs", "3"],
        "job_class": "training",
        "resources": {"gpus": 1, "gpu_memory_mib": 20000, "cpu_milli": 4000, "memory_mib": 16384},
    }
).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], port: int, workdir: Path, timeout_s: float = 30.0) -> bool:
    """Wait until the server under test answers /readyz; print its log and say False if it exited
    or took longer than ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return True
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                print((workdir / "server.log").read_text())
                return False
            time.sleep(0.1)


def setup(workdir: Path, port: int, interval: float) -> tuple[Path, str]:
    from gpunas_scheduler.app import build
    from gpunas_scheduler.config import Config
    from gpunas_scheduler.service.records import Role, TenantRecord
    from gpunas_scheduler.store import migrate

    db = workdir / "bench.db"
    cfg_path = workdir / "config.toml"
    cfg_path.write_text(
        f'database_url = "sqlite:///{db}"\nlisten_port = {port}\n'
        f'schedule_interval_s = {interval}\nlog_level = "warning"\n'
    )
    server = build(Config(database_url=f"sqlite:///{db}"), run_loop=False)
    migrate.upgrade(server.store.engine)
    svc = server.service
    svc.upsert_tenant(TenantRecord("bench"))
    svc.create_user(None, "bench-user", Role.TENANT_MEMBER, "bench")
    token = svc.issue_token(None, "bench-user", 86400).token
    server.store.close()
    return cfg_path, token


class Conn:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.request = (
            f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def submit(self) -> tuple[int, str]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await self.reader.readexactly(length)
        job_id = json.loads(body).get("id", "") if status == 201 else ""
        return status, job_id

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def throughput(port: int, token: str, seconds: float, connections: int) -> tuple[list[str], list[int], int]:
    conns = [Conn(port, token) for _ in range(connections)]
    for c in conns:
        await c.open()
    acked: list[str] = []
    errors = 0
    start = time.perf_counter()
    end = start + seconds
    windows = [0] * (int(seconds // 10) + 1)

    async def run(c: Conn) -> None:
        nonlocal errors
        while time.perf_counter() < end:
            status, job_id = await c.submit()
            if status == 201:
                acked.append(job_id)
                windows[min(int((time.perf_counter() - start) // 10), len(windows) - 1)] += 1
            else:
                errors += 1

    await asyncio.gather(*(run(c) for c in conns))
    for c in conns:
        c.close()
    return acked, windows, errors


async def latency(port: int, token: str, seconds: float, rate: float) -> tuple[list[float], list[str], int]:
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    pool = [Conn(port, token) for _ in range(64)]
    for c in pool:
        await c.open()
        idle.put_nowait(c)
    lat: list[float] = []
    acked: list[str] = []
    errors = 0
    total = int(seconds * rate)
    start = time.perf_counter()

    async def one(due: float) -> None:
        nonlocal errors
        c = await idle.get()
        try:
            status, job_id = await c.submit()
        finally:
            idle.put_nowait(c)
        # Measured from the scheduled send time (open loop: waiting for a free connection counts).
        lat.append(time.perf_counter() - due)
        if status == 201:
            acked.append(job_id)
        else:
            errors += 1

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    for c in pool:
        c.close()
    return lat, acked, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its live children (from /proc)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(x) for x in children.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of ``pid`` by OS thread name (the server names its threads)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = "event loop" if task.name == str(pid) else (task / "comm").read_text().strip()
        except FileNotFoundError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument(
        "--schedule-interval", type=float, default=1.0, help="Scheduling loop interval of the server under test"
    )
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="gpunas-bench-submit-"))
    port = free_port()
    cfg, token = setup(workdir, port, args.schedule_interval)
    exe = str(Path(sys.executable).with_name("gpunas-scheduler"))
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - child's log for the whole run
    proc = subprocess.Popen([exe, "serve", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_ready(proc, port, workdir):
            return 2
        print(f"server pid {proc.pid}, database {workdir / 'bench.db'} (WAL, synchronous=FULL), cpus {os.cpu_count()}")
        print(f"scheduling loop interval {args.schedule_interval}s (it runs during the benchmark)")
        print(f"load average before: {os.getloadavg()[0]:.2f} (other work on this machine skews the numbers)")

        server_cpu0, client_cpu0 = cpu_seconds(proc.pid), time.process_time()
        lat, lat_acked, lat_err = uvloop.run(latency(port, token, args.latency_seconds, args.rate))
        server_cpu = cpu_seconds(proc.pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        print(
            f"latency at {args.rate:.0f} req/s for {args.latency_seconds:.0f}s: n={len(lat)} errors={lat_err} "
            f"p50={pct(lat, 0.50) * 1000:.2f} ms p95={pct(lat, 0.95) * 1000:.2f} ms "
            f"p99={pct(lat, 0.99) * 1000:.2f} ms max={max(lat) * 1000:.2f} ms (target p99 <= 20 ms)"
        )
        print(
            f"  server CPU {server_cpu * 1e6 / max(1, len(lat)):.0f} us per submit, client CPU "
            f"{client_cpu * 1e6 / max(1, len(lat)):.0f} us per submit; load average now {os.getloadavg()[0]:.2f}"
        )

        server_cpu0, client_cpu0, threads0 = cpu_seconds(proc.pid), time.process_time(), thread_cpu(proc.pid)
        acked, windows, errors = uvloop.run(throughput(port, token, args.seconds, args.connections))
        server_cpu = cpu_seconds(proc.pid) - server_cpu0
        threads1 = thread_cpu(proc.pid)
        client_cpu = time.process_time() - client_cpu0
        full = [w / 10.0 for w in windows[: int(args.seconds // 10)]]
        print(
            f"throughput with {args.connections} connections for {args.seconds:.0f}s: {len(acked)} acknowledged, "
            f"{errors} errors"
        )
        print("  per 10 s window (jobs/s): " + ", ".join(f"{w:.0f}" for w in full))
        rate = len(acked) / args.seconds
        print(
            f"  overall {rate:.0f} jobs/s, slowest window {min(full):.0f} jobs/s, median window "
            f"{statistics.median(full):.0f} jobs/s (target >= 2000 sustained)"
        )
        per = server_cpu / max(1, len(acked))
        print(
            f"  server CPU {server_cpu:.1f} s = {per * 1e6:.0f} us per submit -> {1 / per:.0f} submits per "
            f"CPU-second of the server; client CPU {client_cpu:.1f} s; load average now {os.getloadavg()[0]:.2f}"
        )
        split = sorted(((v - threads0.get(k, 0.0), k) for k, v in threads1.items()), reverse=True)
        print(
            "  server CPU per submit by thread: "
            + ", ".join(f"{k} {cpu * 1e6 / max(1, len(acked)):.0f} us" for cpu, k in split if cpu > 0)
        )
    finally:
        proc.send_signal(signal.SIGKILL)  # as a crash: what was acknowledged must be on disk
        proc.wait()
    conn = sqlite3.connect(str(workdir / "bench.db"))
    stored = {r[0] for r in conn.execute("SELECT id FROM jobs")}
    conn.close()
    shutil.rmtree(workdir, ignore_errors=True)
    missing = len((set(acked) | set(lat_acked)) - stored)
    print(f"durability after kill -9: {len(stored)} jobs stored, {missing} acknowledged jobs missing")
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
