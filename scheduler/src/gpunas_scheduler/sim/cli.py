"""``simulate``: replay a trace through our policy and the FIFO and best-fit baselines."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ..domain.model import Policy
from .engine import SimParams, simulate
from .metrics import Report, format_table
from .trace import (
    OPENB_VARIANTS,
    Trace,
    TraceError,
    default_traces_dir,
    read_openb,
    read_simple_csv,
    shrink_cluster,
    uniform_cluster,
)

POLICIES = ("ours", "fifo", "best-fit")


def policy_named(name: str) -> Policy:
    """The simulator's policies. GPUs of trace clusters are whole-GPU devices that may also be
    time-sliced between fractional requests, as in the cluster the Alibaba trace comes from."""
    base = {"ours": Policy(), "fifo": Policy.fifo(), "best-fit": Policy.best_fit()}[name]
    return dataclasses.replace(base, shares_on_whole_gpus=True)


def _cluster(spec: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", spec)
    if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"--nodes must look like 125x8, not {spec!r}")
    return int(m.group(1)), int(m.group(2))


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {raw!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpunas-scheduler simulate", description=__doc__)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--openb", choices=OPENB_VARIANTS, default="default", help="Alibaba openb pod list variant")
    src.add_argument("--csv", type=Path, help="simple CSV trace (submit_time,duration,gpus,tenant,class)")
    p.add_argument(
        "--traces-dir",
        type=Path,
        help="folder holding alibaba-openb-2023/ (default: $GPUNAS_TRACES_DIR "
        "or ../shared/traces next to the repository)",
    )
    p.add_argument("--nodes", type=_cluster, default=(125, 8), help="cluster for --csv traces, NODESxGPUS")
    p.add_argument("--cluster-fraction", type=_positive, default=1.0, help="replay on this fraction of the nodes")
    p.add_argument("--time-scale", type=_positive, default=1.0, help="divide submit times by this factor")
    p.add_argument("--policy", action="append", choices=POLICIES, help="policy to run (repeatable; default all)")
    p.add_argument("--json", action="store_true", help="one JSON report per line instead of a table")
    return p


def load(args: argparse.Namespace) -> Trace:
    if args.csv is not None:
        nodes, gpus = args.nodes
        trace = read_simple_csv(args.csv, uniform_cluster(nodes, gpus))
    else:
        trace = read_openb(args.traces_dir or default_traces_dir(), args.openb)
    if args.cluster_fraction != 1.0:
        trace = shrink_cluster(trace, args.cluster_fraction)
    return trace


def run(args: argparse.Namespace) -> list[Report]:
    trace = load(args)
    params = SimParams(time_scale=args.time_scale)
    return [simulate(trace, policy_named(name), params, name) for name in args.policy or POLICIES]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        reports = run(args)
    except TraceError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for r in reports:
            print(r.to_json())
    else:
        print(format_table(reports))
    return 0
