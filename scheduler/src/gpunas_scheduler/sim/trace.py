"""Job traces for the simulator: Alibaba's openb GPU trace and a simple CSV format.

Simple CSV: a header with at least ``submit_time,duration,gpus,tenant,class`` (seconds, seconds,
GPU count, tenant name, class 1-4 or its name); optional columns ``gpu_share_milli``,
``cpu_milli``, ``memory_mib``, ``service``, ``name``.

Alibaba openb (Weng et al., ATC 2023): tasks have no tenants and no classes, so both are derived
deterministically (see ``docs/simulator.md``): the tenant is the CRC-32 of the task name modulo the
three tenants of the design documents, the class comes from the Kubernetes QoS (Guaranteed ->
urgent inference, LS -> inference, Burstable -> fine-tuning, BE -> training). CPU-only tasks and
tasks without a positive run time are skipped and counted.
"""

from __future__ import annotations

import csv
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..domain.model import Gpu, GpuMode, JobClass, Node, ResourceRequest

TRACES_ENV = "GPUNAS_TRACES_DIR"
OPENB_DIR = "alibaba-openb-2023"
OPENB_VARIANTS = ("default", "gpushare40")
TENANTS = ("suwon", "seongnam", "yongin")
TENANT_WEIGHTS = {"suwon": 2.0, "seongnam": 2.0, "yongin": 1.0}
QOS_CLASS = {
    "Guaranteed": JobClass.URGENT_INFERENCE,
    "LS": JobClass.INFERENCE,
    "Burstable": JobClass.FINE_TUNING,
    "BE": JobClass.TRAINING,
}
GPU_MEMORY_MIB = {"P100": 16384, "T4": 15360, "V100M16": 16384, "V100M32": 32768, "A10": 24576}
UNKNOWN_GPU_MEMORY_MIB = 32768
MAX_TRACE_BYTES = 256 * 1024 * 1024


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    submit: float
    duration: float
    tenant: str
    job_class: JobClass
    request: ResourceRequest
    service: str | None = None


@dataclass(slots=True)
class Trace:
    name: str
    nodes: list[Node]
    tasks: list[Task]
    skipped: dict[str, int] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


def default_traces_dir() -> Path:
    """``$GPUNAS_TRACES_DIR``, else ``../shared/traces`` next to the repository root."""
    env = os.environ.get(TRACES_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[5] / "shared" / "traces"


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    if path.stat().st_size > MAX_TRACE_BYTES:
        raise TraceError(f"{path}: larger than {MAX_TRACE_BYTES} bytes")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        yield from enumerate(reader, start=2)


def _num(path: Path, lineno: int, row: dict[str, str], name: str, default: str | None = None) -> float:
    raw = row.get(name)
    if raw is None or raw == "":
        if default is None:
            raise TraceError(f"{path}:{lineno}: field {name!r} is missing")
        raw = default
    try:
        return float(raw)
    except ValueError:
        raise TraceError(f"{path}:{lineno}: field {name!r} is not a number: {raw!r}") from None


def tenant_of(name: str) -> str:
    return TENANTS[zlib.crc32(name.encode()) % len(TENANTS)]


def read_openb_nodes(path: Path) -> list[Node]:
    nodes = []
    for lineno, row in _rows(path):
        count = int(_num(path, lineno, row, "gpu"))
        model = row.get("model", "")
        memory = GPU_MEMORY_MIB.get(model, UNKNOWN_GPU_MEMORY_MIB)
        gpus = tuple(Gpu(i, memory, GpuMode.WHOLE, nvlink_group=0, model=model) for i in range(count))
        nodes.append(
            Node(
                row["sn"],
                int(_num(path, lineno, row, "cpu_milli")),
                int(_num(path, lineno, row, "memory_mib")),
                gpus,
            )
        )
    return nodes


def read_openb(traces_dir: Path | None = None, variant: str = "default") -> Trace:
    """Alibaba openb pods of one variant on the openb GPU nodes.

    The run time of a task is ``deletion_time - scheduled_time``: the time it held its GPUs in
    production. (The ``multigpu30`` variant has no times and cannot be replayed.)
    """
    if variant not in OPENB_VARIANTS:
        raise TraceError(f"variant must be one of {', '.join(OPENB_VARIANTS)}, not {variant!r}")
    base = (traces_dir or default_traces_dir()) / OPENB_DIR
    nodes = read_openb_nodes(base / "openb_node_list_gpu_node.csv")
    path = base / f"openb_pod_list_{variant}.csv"
    tasks: list[Task] = []
    skipped = {"cpu_only": 0, "no_run_time": 0}
    for lineno, row in _rows(path):
        gpus = int(_num(path, lineno, row, "num_gpu"))
        if gpus == 0:
            skipped["cpu_only"] += 1
            continue
        created = _num(path, lineno, row, "creation_time")
        started = _num(path, lineno, row, "scheduled_time", row.get("creation_time"))
        duration = _num(path, lineno, row, "deletion_time") - started
        if duration <= 0:
            skipped["no_run_time"] += 1
            continue
        milli = int(_num(path, lineno, row, "gpu_milli", "1000"))
        share = milli if gpus == 1 and 0 < milli < 1000 else None
        qos = row.get("qos", "")
        if qos not in QOS_CLASS:
            raise TraceError(f"{path}:{lineno}: field 'qos' is not one of {', '.join(QOS_CLASS)}: {qos!r}")
        request = ResourceRequest(
            gpus=gpus,
            gpu_share_milli=share,
            cpu_milli=int(_num(path, lineno, row, "cpu_milli")),
            memory_mib=int(_num(path, lineno, row, "memory_mib")),
        )
        tasks.append(Task(row["name"], created, duration, tenant_of(row["name"]), QOS_CLASS[qos], request))
    tasks.sort(key=lambda t: (t.submit, t.id))
    return Trace(f"alibaba-openb-{variant}", nodes, tasks, skipped, dict(TENANT_WEIGHTS))


def uniform_cluster(nodes: int, gpus_per_node: int, gpu_memory_mib: int = 81920, nvlink_size: int = 8) -> list[Node]:
    """``nodes`` identical nodes (the benchmark's 125 x 8 shape by default)."""
    return [
        Node(
            f"node-{n:04d}",
            gpus_per_node * 16_000,
            gpus_per_node * 128 * 1024,
            tuple(Gpu(i, gpu_memory_mib, nvlink_group=i // nvlink_size) for i in range(gpus_per_node)),
        )
        for n in range(nodes)
    ]


def _job_class(path: Path, lineno: int, raw: str) -> JobClass:
    value = raw.strip()
    if value.isdigit() and int(value) in {c.value for c in JobClass}:
        return JobClass(int(value))
    try:
        return JobClass[value.upper()]
    except KeyError:
        raise TraceError(f"{path}:{lineno}: field 'class' must be 1-4 or a class name, not {raw!r}") from None


def read_simple_csv(path: Path, nodes: list[Node]) -> Trace:
    tasks = []
    for lineno, row in _rows(path):
        tenant = (row.get("tenant") or "").strip()
        if not tenant:
            raise TraceError(f"{path}:{lineno}: field 'tenant' is missing")
        gpus = int(_num(path, lineno, row, "gpus"))
        share_raw = row.get("gpu_share_milli") or ""
        share = int(_num(path, lineno, row, "gpu_share_milli")) if share_raw else None
        if share is not None and not (0 < share < 1000 and gpus == 1):
            raise TraceError(f"{path}:{lineno}: field 'gpu_share_milli' must be 1-999 with gpus = 1")
        duration = _num(path, lineno, row, "duration")
        if duration <= 0 or gpus < 0:
            raise TraceError(f"{path}:{lineno}: fields 'duration' and 'gpus' must be positive")
        request = ResourceRequest(
            gpus=gpus,
            gpu_share_milli=share,
            cpu_milli=int(_num(path, lineno, row, "cpu_milli", "1000")),
            memory_mib=int(_num(path, lineno, row, "memory_mib", "1024")),
        )
        tasks.append(
            Task(
                row.get("name") or f"task-{lineno - 1:06d}",
                _num(path, lineno, row, "submit_time"),
                duration,
                tenant,
                _job_class(path, lineno, row.get("class") or ""),
                request,
                row.get("service") or None,
            )
        )
    tasks.sort(key=lambda t: (t.submit, t.id))
    return Trace(path.name, nodes, tasks, {}, {})


def shrink_cluster(trace: Trace, fraction: float) -> Trace:
    """The same trace on an evenly spread ``fraction`` of its nodes (every node type keeps its share).

    The openb trace was recorded on a cluster about a hundred times larger than its load; replaying
    it on a fraction of the nodes (and with ``SimParams.time_scale`` compressing arrivals) is how the
    simulator creates the contention under which policies differ.
    """
    if not 0 < fraction <= 1:
        raise TraceError(f"cluster fraction must be in (0, 1], not {fraction}")
    kept = [n for i, n in enumerate(trace.nodes) if math.floor((i + 1) * fraction) > math.floor(i * fraction)]
    return Trace(f"{trace.name}@{fraction:g}", kept, trace.tasks, dict(trace.skipped), dict(trace.weights))
