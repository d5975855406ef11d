"""Prometheus metrics of one server (own registry, so tests can build several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "gpunas_queue_depth", "Pending jobs by class and tenant", ["job_class", "tenant"], registry=r
        )
        self.jobs = Gauge("gpunas_jobs", "Active jobs by state", ["state"], registry=r)
        self.quota_ratio = Gauge(
            "gpunas_quota_used_ratio",
            "Used fraction of a tenant quota (1.0 = at the limit)",
            ["tenant", "quota"],
            registry=r,
        )
        self.quota_warnings = Counter(
            "gpunas_quota_warnings",
            "Quota warnings (80 %) and refusals (100 %)",
            ["tenant", "quota", "level"],
            registry=r,
        )
        self.gpus_total = Gauge("gpunas_gpus", "GPUs on schedulable nodes", registry=r)
        self.gpu_allocated = Gauge(
            "gpunas_gpu_allocated_units", "Allocated GPU capacity in whole-GPU units", ["node"], registry=r
        )
        self.pass_seconds = Histogram(
            "gpunas_schedule_pass_seconds",
            "Duration of one scheduling pass (decision latency)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.decisions = Counter("gpunas_schedule_decisions", "Scheduling decisions by kind", ["kind"], registry=r)
        self.submits = Counter("gpunas_submits", "Accepted job submissions", ["tenant"], registry=r)
        self.api_refusals = Counter(
            "gpunas_api_refusals", "Requests refused by the API-call quota", ["tenant"], registry=r
        )
        self.leader = Gauge("gpunas_leader", "1 while this server holds the scheduling lock", registry=r)
