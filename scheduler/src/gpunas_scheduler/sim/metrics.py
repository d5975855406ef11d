"""Simulation report and the statistics it uses."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1.0 is perfectly even, 1/n is one taker."""
    if not values:
        return 1.0
    square_sum = sum(v * v for v in values)
    if square_sum == 0:
        return 1.0
    return sum(values) ** 2 / (len(values) * square_sum)


@dataclass(slots=True)
class Report:
    policy: str
    trace: str
    tasks: int
    finished: int
    unfinished: int
    not_started: int
    avg_jct_s: float
    p95_jct_s: float
    avg_wait_s_by_tenant: dict[str, float] = field(default_factory=dict)
    avg_wait_s_by_class: dict[str, float] = field(default_factory=dict)
    jain_fairness: float | None = None
    idle_while_fit_gpu_h: float = 0.0
    held_idle_gpu_h: float = 0.0
    fragmented_gpu_h: float = 0.0
    preemptions: dict[str, int] = field(default_factory=dict)
    lost_work_gpu_h: float = 0.0
    makespan_s: float = 0.0
    gpu_utilization: float = 0.0
    passes: int = 0
    decisions: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


ROWS: tuple[tuple[str, str], ...] = (
    ("tasks finished / unfinished", "finished"),
    ("tasks never started", "not_started"),
    ("avg JCT (h)", "avg_jct_s"),
    ("p95 JCT (h)", "p95_jct_s"),
    ("Jain fairness (share-normalised GPU time while jobs wait)", "jain_fairness"),
    ("idle-while-fit (GPU h)", "idle_while_fit_gpu_h"),
    ("held for reservations (GPU h)", "held_idle_gpu_h"),
    ("fragmented free GPUs (GPU h)", "fragmented_gpu_h"),
    ("preemptions", "preemptions"),
    ("lost work (GPU h)", "lost_work_gpu_h"),
    ("GPU utilisation", "gpu_utilization"),
    ("makespan (h)", "makespan_s"),
    ("scheduling passes", "passes"),
)


def _cell(report: Report, attr: str) -> str:
    if attr == "finished":
        return f"{report.finished} / {report.unfinished}"
    value = getattr(report, attr)
    if value is None:
        return "n/a (no job waited)"
    if attr.endswith("_s"):
        return f"{value / 3600.0:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "0"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(reports: Sequence[Report]) -> str:
    """Plain-text comparison table, one column per policy."""
    rows: list[list[str]] = [["metric", *[r.policy for r in reports]]]
    for label, attr in ROWS:
        rows.append([label, *[_cell(r, attr) for r in reports]])
    tenants = sorted({t for r in reports for t in r.avg_wait_s_by_tenant})
    for t in tenants:
        rows.append(
            [f"avg wait (h), tenant {t}", *[f"{r.avg_wait_s_by_tenant.get(t, 0.0) / 3600:.2f}" for r in reports]]
        )
    classes = sorted({c for r in reports for c in r.avg_wait_s_by_class})
    for c in classes:
        rows.append([f"avg wait (h), class {c}", *[f"{r.avg_wait_s_by_class.get(c, 0.0) / 3600:.2f}" for r in reports]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
