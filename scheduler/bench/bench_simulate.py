"""Replay the whole Alibaba openb default trace through our policy and the two baselines.

Target (issue 6): the replay of the whole default trace finishes in <= 60 s, with the metrics of all
three policies. The faithful replay (real submit times, all 1,213 nodes) barely loads the cluster,
so the script also replays a contended configuration (submit times compressed 30x on 5 % of the
nodes) where the policies differ; that second run is informative and not part of the target.

    .venv/bin/python bench/bench_simulate.py [--traces-dir DIR] [--skip-contended]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gpunas_scheduler.sim import SimParams, format_table, policy_named, read_openb, shrink_cluster, simulate
from gpunas_scheduler.sim.cli import POLICIES
from gpunas_scheduler.sim.trace import default_traces_dir


def replay(trace, params: SimParams, label: str) -> float:
    print(
        f"\n== {label}: {trace.name}, {len(trace.nodes)} nodes, {sum(len(n.gpus) for n in trace.nodes)} GPUs, "
        f"{len(trace.tasks)} GPU tasks (skipped: {trace.skipped})"
    )
    reports = []
    total = 0.0
    for name in POLICIES:
        t0 = time.perf_counter()
        reports.append(simulate(trace, policy_named(name), params, name))
        wall = time.perf_counter() - t0
        total += wall
        r = reports[-1]
        print(
            f"  {name:9s} wall {wall:6.1f} s   {r.passes} passes, {r.decisions} decisions "
            f"({r.decisions / wall:,.0f} decisions/s of simulated work)"
        )
    print(f"  all three policies: {total:.1f} s")
    print()
    print(format_table(reports))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces-dir", type=Path, default=None)
    ap.add_argument("--skip-contended", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    trace = read_openb(args.traces_dir or default_traces_dir(), "default")
    print(f"trace read in {time.perf_counter() - t0:.2f} s")
    total = replay(trace, SimParams(), "faithful replay")
    print(f"\nwhole default trace, three policies: {total:.1f} s   target <= 60 s")
    if not args.skip_contended:
        replay(shrink_cluster(trace, 0.05), SimParams(time_scale=30.0), "contended replay (x30 arrivals, 5 % of nodes)")


if __name__ == "__main__":
    main()
