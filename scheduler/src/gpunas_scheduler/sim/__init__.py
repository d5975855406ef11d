"""Trace simulator: replays job traces through the domain's scheduling pass with a simulated clock."""

from .cli import main, policy_named
from .engine import SimParams, Simulator, simulate
from .metrics import Report, format_table
from .trace import Task, Trace, TraceError, read_openb, read_simple_csv, shrink_cluster, uniform_cluster

__all__ = [
    "Report",
    "SimParams",
    "Simulator",
    "Task",
    "Trace",
    "TraceError",
    "format_table",
    "main",
    "policy_named",
    "read_openb",
    "read_simple_csv",
    "shrink_cluster",
    "simulate",
    "uniform_cluster",
]
