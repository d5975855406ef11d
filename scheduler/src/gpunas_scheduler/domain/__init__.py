"""Pure scheduling policies: model, queue order, quotas, fair-share, placement, preemption.

``schedule`` is the one entry point for a scheduling pass; ``plan`` runs the same pass against a
``ClusterState`` kept between passes (the simulator's path).
"""

from .cluster import ClusterState, preemptible, runtime_bound, runtime_limit
from .schedule import plan, schedule

__all__ = ["ClusterState", "plan", "preemptible", "runtime_bound", "runtime_limit", "schedule"]
