"""Pure scheduling policies: model, queue order, quotas, fair-share, placement, preemption."""
