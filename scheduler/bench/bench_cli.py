"""Wall time of one ``gpunas-scheduler jobs submit`` call, beside ``curl`` doing the same request.

Starts ``gpunas-scheduler serve`` on a fresh SQLite database (as ``bench_submit.py`` does), then
alternates ``--runs`` CLI submits and ``--runs`` ``curl`` submits of the same job, each a new
process, and prints the median and p95 of both, the median CPU time (user + system) of one call,
and the load average (target: CLI <= 150 ms). The difference between the two is what the CLI
itself costs: interpreter start, imports, argument parsing; the server's share is the same for
both. On a busy machine the wall times follow the load; the CPU time of a call much less so.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_submit import BODY, free_port, pct, setup, wait_ready


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({res.returncode}): {res.stderr.decode()[-500:]}")
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50, help="submits per client")
    args = ap.parse_args()
    curl = shutil.which("curl")
    if curl is None:
        print("curl not found: apt-get install curl")
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="gpunas-bench-cli-"))
    port = free_port()
    cfg, token = setup(workdir, port, 1.0)
    exe = str(Path(sys.executable).with_name("gpunas-scheduler"))
    url = f"http://127.0.0.1:{port}"
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - child's log for the whole run
    proc = subprocess.Popen([exe, "serve", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_ready(proc, port, workdir):
            return 2
        env = {**os.environ, "GPUNAS_URL": url, "GPUNAS_TOKEN": token}
        cli = [exe, "jobs", "submit", "--gpus", "1", "--gpu-memory-mib", "20000", "--cpu-milli", "4000"]
        cli += ["--memory-mib", "16384", "nvcr.io/nvidia/pytorch:24.05-py3", "python", "train.py"]
        curl_argv = [curl, "-fsS", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}"]
        curl_argv += ["-H", "Content-Type: application/json", "--data-binary", BODY.decode(), url + "/api/v1/jobs"]
        print(f"server pid {proc.pid}, cpus {os.cpu_count()}, load average before {os.getloadavg()}")
        times: dict[str, list[float]] = {"cli": [], "curl": []}
        cpu: dict[str, list[float]] = {"cli": [], "curl": []}
        timed(cli, env)
        timed(curl_argv, env)
        for _ in range(args.runs):
            for name, argv in (("cli", cli), ("curl", curl_argv)):
                wall, used = timed(argv, env)
                times[name].append(wall)
                cpu[name].append(used)
        for name, values in times.items():
            print(
                f"{name:5} n={len(values)} median={statistics.median(values) * 1000:.1f} ms "
                f"p95={pct(values, 0.95) * 1000:.1f} ms max={max(values) * 1000:.1f} ms "
                f"cpu median={statistics.median(cpu[name]) * 1000:.1f} ms"
            )
        cost = statistics.median(times["cli"]) - statistics.median(times["curl"])
        print(f"CLI over curl (median): {cost * 1000:.1f} ms (target CLI median <= 150 ms)")
        print(f"load average after {os.getloadavg()}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
