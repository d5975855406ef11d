"""Free-capacity bookkeeping and placement.

``ClusterState`` holds what is free on every node and GPU, indexed so that one placement costs
about O(log n): whole GPUs by (node, NVLink group) buckets of free-GPU count, fractional shares in
a list sorted by remaining share, MIG instances and vGPU slots by profile. Allocation rules:

* a request only draws from its pool (whole GPUs, MIG instance, vGPU slot, time-slice share);
* GPU memory is never overcommitted; node memory is not overcommitted, CPU up to
  ``Policy.cpu_overcommit``;
* GPUs at or above ``Policy.max_utilization`` take no new work;
* multi-GPU requests stay inside one NVLink group of one node (GPUs without a group form a
  per-node PCIe group that multi-GPU requests use only when ``strict_nvlink`` is off);
* replicas of one service go to different nodes;
* among fitting candidates the policy picks best fit (fewest free GPUs left in the group, least
  share left on the GPU); ties go to the design score 0.6 x free-memory ratio + 0.4 x idle ratio
  (``PACKING_SCORE``) or to node order (``BEST_FIT``);
* a ``Hold`` (backfill reservation, see ``reserve``) keeps its GPUs, and the node CPU and memory
  its job needs, from every job that might still run at the hold's start time, except opportunistic
  starts of preemptible jobs, which its job preempts when the hold is due.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from .model import (
    Allocation,
    Gpu,
    GpuMode,
    GpuSlice,
    Job,
    JobClass,
    JobState,
    Node,
    Placement,
    Policy,
    Pool,
    PreemptReason,
    ResourceRequest,
)

PCIE_GROUP = -1
_NO_GPUS: frozenset[int] = frozenset()


def runtime_limit(job: Job, policy: Policy) -> float | None:
    """Run time after which a job is checkpointed and requeued (the tighter of job and class limit)."""
    limit = policy.max_runtime_s.get(job.job_class)
    own = job.max_runtime_s
    if own is not None and (limit is None or own < limit):
        return own
    return limit


def runtime_bound(job: Job, policy: Policy) -> float:
    """Longest a job started now can hold its resources: its run-time limit plus the grace period
    it gets to checkpoint at that limit (infinite without a limit)."""
    limit = runtime_limit(job, policy)
    return math.inf if limit is None else limit + job.checkpoint_grace_s


def preemptible(job: Job) -> bool:
    """Whether ``job`` may start opportunistically on held capacity.

    A priority victim must be of a strictly lower class than its preemptor, so urgent inference is
    never preempted for another job: it stays off held capacity it would outlast.
    """
    return job.job_class > JobClass.URGENT_INFERENCE


def _restricts(hold: Hold, bound: float) -> bool:
    """Whether ``hold`` keeps a job that holds its resources for ``bound`` seconds off its capacity.

    An opportunistic search passes ``bound = 0``: it may use the hold until the hold is due.
    """
    return bound > hold.span or (bound == 0.0 and hold.span <= 0.0)


class Hold:
    """A backfill reservation: ``job_id`` is to start on ``node`` at ``until`` on ``gpus``.

    A job that may still run at ``until`` (its ``runtime_bound`` is more than ``span``, the time
    from the pass to ``until``) is not placed on those GPUs, and on this node takes no more CPU and
    memory than ``cpu_spare`` and ``memory_spare``: what is left at ``until`` beyond the held job's
    needs, unless it starts opportunistically (``Allocation.opportunistic``, see ``find``) while the
    hold is not due. Jobs that end by ``until`` may use anything.
    """

    __slots__ = ("cpu_spare", "gpus", "job_id", "memory_spare", "node", "service", "span", "until")

    def __init__(
        self,
        job: Job,
        node: str,
        until: float,
        span: float,
        gpus: frozenset[int],
        cpu_spare: int,
        memory_spare: int,
    ) -> None:
        self.job_id = job.id
        self.service = job.service
        self.node = node
        self.until = until
        self.span = span
        self.gpus = gpus
        self.cpu_spare = cpu_spare
        self.memory_spare = memory_spare


class GpuState:
    __slots__ = (
        "free_memory",
        "free_mig",
        "free_share",
        "free_vgpu",
        "gpu",
        "group",
        "holders",
        "node",
        "order",
        "share_key",
        "usable",
    )

    def __init__(self, node: NodeState, gpu: Gpu, order: int, usable: bool) -> None:
        self.node = node
        self.gpu = gpu
        self.order = order
        self.usable = usable
        self.free_memory = gpu.memory_mib
        self.free_share = 1000
        self.free_mig: dict[str, list[str]] = {}
        for inst in gpu.mig_instances:
            self.free_mig.setdefault(inst.profile, []).append(inst.id)
        slots = gpu.vgpu_profile.max_instances if gpu.vgpu_profile is not None else 0
        self.free_vgpu: list[int] = list(range(slots))
        self.group: GroupState | None = None
        self.share_key: tuple[float, ...] | None = None
        self.holders: dict[str, GpuSlice] = {}

    def score(self, policy: Policy) -> float:
        mem = self.gpu.memory_mib
        free_ratio = self.free_memory / mem if mem > 0 else 0.0
        return policy.score_free_memory_weight * free_ratio + policy.score_idle_weight * (1.0 - self.gpu.utilization)

    @property
    def whole_free(self) -> bool:
        return self.free_share == 1000 and self.free_memory == self.gpu.memory_mib


class GroupState:
    __slots__ = ("free", "key", "members", "node", "order", "version")

    def __init__(self, node: NodeState, key: int, order: int) -> None:
        self.node = node
        self.key = key
        self.order = order
        self.free: list[GpuState] = []
        self.members: list[GpuState] = []
        self.version = 0


class NodeState:
    __slots__ = (
        "earliest",
        "free_cpu",
        "free_memory",
        "gpus",
        "groups",
        "jobs",
        "node",
        "order",
        "pools",
        "services",
    )

    def __init__(self, node: Node, order: int, cpu_overcommit: float) -> None:
        self.node = node
        self.order = order
        self.free_cpu = int(node.cpu_milli * cpu_overcommit)
        self.free_memory = node.memory_mib
        self.gpus: dict[int, GpuState] = {}
        self.groups: dict[int, GroupState] = {}
        self.jobs: dict[str, Job] = {}
        self.services: dict[str, int] = {}
        self.pools: set[Pool] = {Pool.NONE} if node.schedulable else set()
        # ClusterState._earliest_gpus by request, valid until a job here starts, stops or is preempted.
        self.earliest: dict[ResourceRequest, tuple[float, frozenset[int]] | None] = {}


_POOLS_OF_MODE = {
    GpuMode.WHOLE: (Pool.WHOLE,),
    GpuMode.SHARED: (Pool.SHARE,),
    GpuMode.MIG: (Pool.MIG,),
    GpuMode.VGPU: (Pool.VGPU,),
}


def _share_sort_key(entry: tuple[tuple[float, ...], int, GpuState]) -> tuple[tuple[float, ...], int]:
    return (entry[0], entry[1])


def _share_free(entry: tuple[tuple[float, ...], int, GpuState]) -> float:
    return entry[0][0]


@dataclass(frozen=True, slots=True)
class _Candidate:
    gpu: GpuState
    slot: str | int | None


class ClusterState:
    """Free capacity of the cluster, updated by ``allocate`` and ``release``."""

    def __init__(self, nodes: Iterable[Node], running: Iterable[Job], policy: Policy) -> None:
        self.policy = policy
        self.nodes: dict[str, NodeState] = {}
        self.running: dict[str, Job] = {}
        self.allocations: dict[str, Allocation] = {}
        self.preempting: dict[str, float] = {}
        self.reserved: dict[str, int] = {}
        self.priority_victims: set[str] = set()
        self.tenant_units: dict[str, float] = {}
        self.deadlines: list[tuple[float, str, float]] = []
        self.ends: dict[str, float] = {}
        self.holds: dict[str, Hold] = {}
        self.opportunistic: set[str] = set()
        self.longest_hold_span = 0.0
        self._buckets: dict[int, list[tuple[tuple[float, ...], int, int, GroupState]]] = {}
        self._max_bucket = 0
        self._share: list[tuple[tuple[float, ...], int, GpuState]] = []
        self._mig: dict[str, dict[int, GpuState]] = {}
        self._vgpu: dict[str, dict[int, GpuState]] = {}
        self._seq = 0
        gpu_order = 0
        group_order = 0
        for n_order, node in enumerate(nodes):
            ns = NodeState(node, n_order, policy.cpu_overcommit)
            self.nodes[node.name] = ns
            usable_node = node.schedulable
            for gpu in node.gpus:
                usable = usable_node and gpu.utilization < policy.max_utilization
                gs = GpuState(ns, gpu, gpu_order, usable)
                gpu_order += 1
                ns.gpus[gpu.index] = gs
                if usable:
                    ns.pools.update(_POOLS_OF_MODE[gpu.mode])
                    if gpu.mode is GpuMode.WHOLE and policy.shares_on_whole_gpus:
                        ns.pools.add(Pool.SHARE)
                if gpu.mode is GpuMode.WHOLE:
                    key = gpu.nvlink_group if gpu.nvlink_group is not None else PCIE_GROUP
                    group = ns.groups.get(key)
                    if group is None:
                        group = GroupState(ns, key, group_order)
                        group_order += 1
                        ns.groups[key] = group
                    gs.group = group
                    group.members.append(gs)
        for job in running:
            if job.allocation is not None and job.allocation.node in self.nodes:
                self._take(job, job.allocation)
                if job.state is JobState.PREEMPTING and job.preempt_deadline is not None:
                    self.mark_preempting(job, job.preempt_deadline, job.preempt_reason)
        for ns in self.nodes.values():
            for group in ns.groups.values():
                group.free = [g for g in ns.gpus.values() if g.group is group and g.usable and g.whole_free]
                self._push_group(group)
        for ns in self.nodes.values():
            for gs in ns.gpus.values():
                if self._share_eligible(gs):
                    gs.share_key = self._share_key(gs)
                    self._share.append((gs.share_key, gs.order, gs))
                self._index_profiles(gs)
        self._share.sort(key=_share_sort_key)

    # ----------------------------------------------------------------- indexes
    def _group_key(self, group: GroupState) -> tuple[float, ...]:
        if self.policy.placement is Placement.PACKING_SCORE and group.free:
            mean = sum(g.score(self.policy) for g in group.free) / len(group.free)
            return (-mean, float(group.order))
        return (float(group.order),)

    def _push_group(self, group: GroupState) -> None:
        group.version += 1
        n = len(group.free)
        if n == 0:
            return
        bucket = self._buckets.setdefault(n, [])
        self._max_bucket = max(self._max_bucket, n)
        heapq.heappush(bucket, (self._group_key(group), group.version, group.order, group))

    def _share_eligible(self, gs: GpuState) -> bool:
        if not gs.usable or gs.free_share <= 0:
            return False
        if gs.gpu.mode is GpuMode.SHARED:
            return True
        return gs.gpu.mode is GpuMode.WHOLE and self.policy.shares_on_whole_gpus

    def _share_key(self, gs: GpuState) -> tuple[float, ...]:
        if self.policy.placement is Placement.PACKING_SCORE:
            group_free = len(gs.group.free) if gs.group is not None else 0
            return (float(gs.free_share), float(group_free), -round(gs.score(self.policy), 6))
        return (float(gs.free_share),)

    def _index_gpu(self, gs: GpuState) -> None:
        if gs.share_key is not None:
            i = bisect.bisect_left(self._share, (gs.share_key, gs.order), key=_share_sort_key)
            while self._share[i][2] is not gs:
                i += 1
            del self._share[i]
            gs.share_key = None
        if self._share_eligible(gs):
            gs.share_key = self._share_key(gs)
            bisect.insort(self._share, (gs.share_key, gs.order, gs), key=_share_sort_key)
        self._index_profiles(gs)

    def _index_profiles(self, gs: GpuState) -> None:
        if gs.usable:
            for profile, free in gs.free_mig.items():
                if free:
                    self._mig.setdefault(profile, {})[gs.order] = gs
                else:
                    self._mig.get(profile, {}).pop(gs.order, None)
            if gs.gpu.vgpu_profile is not None:
                name = gs.gpu.vgpu_profile.name
                if gs.free_vgpu:
                    self._vgpu.setdefault(name, {})[gs.order] = gs
                else:
                    self._vgpu.get(name, {}).pop(gs.order, None)

    def _refresh_group(self, group: GroupState) -> None:
        free = [g for g in group.node.gpus.values() if g.group is group and g.usable and g.whole_free]
        group.free = free
        self._push_group(group)
        if self.policy.placement is Placement.PACKING_SCORE and self.policy.shares_on_whole_gpus:
            for g in group.node.gpus.values():
                if g.group is group and g.share_key is not None:
                    self._index_gpu(g)

    # ------------------------------------------------------------ bookkeeping
    def _take(self, job: Job, alloc: Allocation, sign: int = 1, started_at: float | None = None) -> None:
        ns = self.nodes[alloc.node]
        ns.earliest.clear()
        ns.free_cpu -= sign * alloc.cpu_milli
        ns.free_memory -= sign * alloc.memory_mib
        self.tenant_units[job.tenant] = self.tenant_units.get(job.tenant, 0.0) + sign * alloc.gpu_units
        if sign > 0:
            ns.jobs[job.id] = job
            self.running[job.id] = job
            self.allocations[job.id] = alloc
            started = started_at if started_at is not None else job.started_at or 0.0
            limit = runtime_limit(job, self.policy)
            if limit is not None:
                heapq.heappush(self.deadlines, (started + limit, job.id, started))
                self.ends[job.id] = started + limit + job.checkpoint_grace_s
            else:
                self.ends[job.id] = math.inf
            if alloc.opportunistic:
                # A hold may preempt it whenever due: for holds it is gone already.
                self.opportunistic.add(job.id)
                self.ends[job.id] = -math.inf
            if job.service is not None:
                ns.services[job.service] = ns.services.get(job.service, 0) + 1
        else:
            ns.jobs.pop(job.id, None)
            self.running.pop(job.id, None)
            self.allocations.pop(job.id, None)
            self.preempting.pop(job.id, None)
            self.ends.pop(job.id, None)
            self.opportunistic.discard(job.id)
            if job.id in self.priority_victims:
                self.priority_victims.discard(job.id)
                self._refresh_reservation(ns)
            if job.service is not None:
                left = ns.services.get(job.service, 0) - 1
                if left > 0:
                    ns.services[job.service] = left
                else:
                    ns.services.pop(job.service, None)
        for sl in alloc.slices:
            gs = ns.gpus.get(sl.gpu)
            if gs is None:
                continue
            gs.free_memory -= sign * sl.memory_mib
            gs.free_share -= sign * sl.share_milli
            if sign > 0:
                gs.holders[job.id] = sl
            else:
                gs.holders.pop(job.id, None)
            if sl.mig_instance is not None:
                profile = next(i.profile for i in gs.gpu.mig_instances if i.id == sl.mig_instance)
                if sign > 0:
                    gs.free_mig[profile].remove(sl.mig_instance)
                else:
                    gs.free_mig[profile].append(sl.mig_instance)
            if sl.vgpu_slot is not None:
                if sign > 0:
                    gs.free_vgpu.remove(sl.vgpu_slot)
                else:
                    gs.free_vgpu.append(sl.vgpu_slot)

    def mark_preempting(self, job: Job, deadline: float, reason: PreemptReason | None) -> None:
        """Record that ``job`` was signalled and leaves by ``deadline``.

        A node where a job is being preempted for priority is reserved: until its victims are
        gone, only jobs that could have preempted them (a class allowed to preempt, more urgent
        than every victim there) may be placed on it. Otherwise a lower-class job could backfill
        the room being made, and the preemptor would have to preempt again.
        """
        self.preempting[job.id] = deadline
        if job.id not in self.opportunistic:
            self.ends[job.id] = deadline
        alloc = self.allocations.get(job.id)
        if alloc is not None:
            self.nodes[alloc.node].earliest.clear()
        if reason in (None, PreemptReason.PRIORITY) and alloc is not None:
            self.priority_victims.add(job.id)
            node = alloc.node
            self.reserved[node] = min(self.reserved.get(node, int(job.job_class)), int(job.job_class))

    def _may_use_reserved(self, ns: NodeState, job: Job) -> bool:
        """Only a job that could itself have preempted the victims may use a reserved node."""
        return job.job_class <= self.policy.preempt_max_class and job.job_class < self.reserved[ns.node.name]

    def _refresh_reservation(self, ns: NodeState) -> None:
        classes = [int(j.job_class) for j in ns.jobs.values() if j.id in self.priority_victims]
        if classes:
            self.reserved[ns.node.name] = min(classes)
        else:
            self.reserved.pop(ns.node.name, None)

    def allocate(self, job: Job, alloc: Allocation, started_at: float) -> None:
        """Record that ``job`` holds ``alloc`` from ``started_at`` on."""
        self._take(job, alloc, started_at=started_at)
        self._reindex(alloc)
        if self.holds:
            hold = self.holds.get(alloc.node)
            if hold is not None and not alloc.opportunistic and runtime_bound(job, self.policy) > hold.span:
                hold.cpu_spare -= alloc.cpu_milli
                hold.memory_spare -= alloc.memory_mib

    def release(self, job_id: str) -> None:
        """Return the resources of a job that stopped."""
        job = self.running.get(job_id)
        alloc = self.allocations.get(job_id)
        if job is None or alloc is None:
            return
        self._take(job, alloc, sign=-1)
        self._reindex(alloc)

    def _reindex(self, alloc: Allocation) -> None:
        ns = self.nodes[alloc.node]
        groups: set[int] = set()
        for sl in alloc.slices:
            gs = ns.gpus.get(sl.gpu)
            if gs is None:
                continue
            self._index_gpu(gs)
            if gs.group is not None:
                groups.add(gs.group.key)
        for key in groups:
            self._refresh_group(ns.groups[key])

    # --------------------------------------------------------------- queries
    def free_gpu_units(self) -> float:
        return sum(gs.free_share for ns in self.nodes.values() for gs in ns.gpus.values() if gs.usable) / 1000.0

    def _node_fits(self, ns: NodeState, job: Job, host: bool, bound: float) -> bool:
        if ns.node.name in self.reserved and not self._may_use_reserved(ns, job):
            return False
        req = job.request
        if host and (ns.free_cpu < req.cpu_milli or ns.free_memory < req.memory_mib):
            return False
        if self.holds:
            hold = self.holds.get(ns.node.name)
            if hold is not None and _restricts(hold, bound):
                if host and (req.cpu_milli > hold.cpu_spare or req.memory_mib > hold.memory_spare):
                    return False
                if job.service is not None and job.service == hold.service:
                    return False
        return job.service is None or job.service not in ns.services

    def _held_gpus(self, ns: NodeState, bound: float) -> frozenset[int]:
        """GPUs of ``ns`` that a job holding its resources for ``bound`` seconds may not take."""
        hold = self.holds.get(ns.node.name)
        if hold is None or not _restricts(hold, bound):
            return _NO_GPUS
        return hold.gpus

    def exempt_from_holds(self, job: Job) -> bool:
        """Whether some hold lets ``job`` use its resources (the job ends before that hold starts)."""
        return bool(self.holds) and runtime_bound(job, self.policy) <= self.longest_hold_span

    def find(self, job: Job, host: bool = True, holds: bool = True, opportunistic: bool = False) -> Allocation | None:
        """Best allocation for ``job`` under the policy, or None when nothing fits now.

        ``host=False`` ignores node CPU and memory (used to tell GPU fragmentation from host limits);
        ``holds=False`` ignores backfill reservations (used to measure what they keep idle);
        ``opportunistic=True`` may use held capacity whose hold is not due yet.
        """
        if not holds or not self.holds:
            bound = -math.inf
        elif opportunistic:
            bound = 0.0
        else:
            bound = runtime_bound(job, self.policy)
        pool = job.request.pool
        if pool is Pool.WHOLE:
            return self._find_whole(job, host, bound)
        if pool is Pool.SHARE:
            return self._find_share(job, host, bound)
        if pool is Pool.MIG:
            return self._find_profiled(job, self._mig.get(job.request.mig_profile or "", {}), True, host, bound)
        if pool is Pool.VGPU:
            return self._find_profiled(job, self._vgpu.get(job.request.vgpu_profile or "", {}), False, host, bound)
        return self._find_cpu_only(job, host, bound)

    def _alloc(self, ns: NodeState, req: ResourceRequest, slices: list[GpuSlice]) -> Allocation:
        return Allocation(ns.node.name, tuple(slices), req.cpu_milli, req.memory_mib)

    def _find_whole(self, job: Job, host: bool, bound: float) -> Allocation | None:
        req = job.request
        need = req.gpus
        need_mem = req.gpu_memory_mib or 0
        strict = self.policy.strict_nvlink and need > 1
        by_score = self.policy.placement is Placement.PACKING_SCORE
        for size in range(need, self._max_bucket + 1):
            heap = self._buckets.get(size)
            if not heap:
                continue
            skipped: list[tuple[tuple[float, ...], int, int, GroupState]] = []
            found: Allocation | None = None
            while heap:
                entry = heap[0]
                group = entry[3]
                if entry[1] != group.version:
                    heapq.heappop(heap)
                    continue
                ok = not (strict and group.key == PCIE_GROUP) and self._node_fits(group.node, job, host, bound)
                if ok:
                    fitting = [g for g in group.free if g.gpu.memory_mib >= need_mem]
                    if self.holds:
                        held = self._held_gpus(group.node, bound)
                        fitting = [g for g in fitting if g.gpu.index not in held]
                    if len(fitting) >= need:
                        if by_score:
                            fitting.sort(key=lambda g: (-g.score(self.policy), g.order))
                        slices = [GpuSlice(g.gpu.index, g.gpu.memory_mib) for g in fitting[:need]]
                        found = self._alloc(group.node, req, slices)
                        break
                skipped.append(heapq.heappop(heap))
            for entry in skipped:
                heapq.heappush(heap, entry)
            if found is not None:
                return found
        return None

    def _share_memory(self, gs: GpuState, req: ResourceRequest) -> int:
        if req.gpu_memory_mib is not None:
            return req.gpu_memory_mib
        return (gs.gpu.memory_mib * (req.gpu_share_milli or 0) + 999) // 1000

    def _find_share(self, job: Job, host: bool, bound: float) -> Allocation | None:
        req = job.request
        share = req.gpu_share_milli or 0
        i = bisect.bisect_left(self._share, float(share), key=_share_free)
        for _key, _order, gs in self._share[i:]:
            mem = self._share_memory(gs, req)
            if gs.free_memory < mem or not self._node_fits(gs.node, job, host, bound):
                continue
            if self.holds and gs.gpu.index in self._held_gpus(gs.node, bound):
                continue
            return self._alloc(gs.node, req, [GpuSlice(gs.gpu.index, mem, share)])
        return None

    def _find_profiled(
        self, job: Job, candidates: dict[int, GpuState], mig: bool, host: bool, bound: float
    ) -> Allocation | None:
        req = job.request
        best: tuple[tuple[float, ...], _Candidate] | None = None
        for gs in candidates.values():
            if not self._node_fits(gs.node, job, host, bound):
                continue
            if self.holds and gs.gpu.index in self._held_gpus(gs.node, bound):
                continue
            if mig:
                free_ids = gs.free_mig.get(req.mig_profile or "", [])
                if not free_ids:
                    continue
                remaining = sum(len(v) for v in gs.free_mig.values())
                slot: str | int = free_ids[0]
            else:
                if not gs.free_vgpu:
                    continue
                remaining = len(gs.free_vgpu)
                slot = min(gs.free_vgpu)
            if self.policy.placement is Placement.PACKING_SCORE:
                key: tuple[float, ...] = (float(remaining), -gs.score(self.policy), float(gs.order))
            else:
                key = (float(remaining), float(gs.order))
            if best is None or key < best[0]:
                best = (key, _Candidate(gs, slot))
        if best is None:
            return None
        cand = best[1]
        gs = cand.gpu
        if mig:
            inst = next(i for i in gs.gpu.mig_instances if i.id == cand.slot)
            sl = GpuSlice(gs.gpu.index, inst.memory_mib, 0, mig_instance=inst.id)
        else:
            profile = gs.gpu.vgpu_profile
            mem = profile.memory_mib if profile is not None else 0
            sl = GpuSlice(gs.gpu.index, mem, 0, vgpu_slot=int(cand.slot) if cand.slot is not None else None)
        return self._alloc(gs.node, req, [sl])

    def _find_cpu_only(self, job: Job, host: bool, bound: float) -> Allocation | None:
        for ns in self.nodes.values():
            if ns.node.schedulable and self._node_fits(ns, job, host, bound):
                return self._alloc(ns, job.request, [])
        return None

    # ------------------------------------------------------ hypothetical fit
    def fits_after_release(self, job: Job, ns: NodeState, victims: Iterable[Job]) -> bool:
        """Whether ``job`` would fit on ``ns`` once ``victims`` (running there) released."""
        if not ns.node.schedulable:
            return False
        if ns.node.name in self.reserved and not self._may_use_reserved(ns, job):
            return False
        if self.holds:
            hold = self.holds.get(ns.node.name)
            if hold is not None and runtime_bound(job, self.policy) > hold.span:
                return False
        req = job.request
        freed_share: dict[int, int] = {}
        freed_mem: dict[int, int] = {}
        freed_mig: set[str] = set()
        freed_vgpu: dict[int, int] = {}
        cpu = ns.free_cpu
        memory = ns.free_memory
        victim_services: dict[str, int] = {}
        for v in victims:
            alloc = self.allocations.get(v.id)
            if alloc is None:
                continue
            cpu += alloc.cpu_milli
            memory += alloc.memory_mib
            if v.service is not None:
                victim_services[v.service] = victim_services.get(v.service, 0) + 1
            for sl in alloc.slices:
                freed_share[sl.gpu] = freed_share.get(sl.gpu, 0) + sl.share_milli
                freed_mem[sl.gpu] = freed_mem.get(sl.gpu, 0) + sl.memory_mib
                if sl.mig_instance is not None:
                    freed_mig.add(sl.mig_instance)
                if sl.vgpu_slot is not None:
                    freed_vgpu[sl.gpu] = freed_vgpu.get(sl.gpu, 0) + 1
        if cpu < req.cpu_milli or memory < req.memory_mib:
            return False
        if job.service is not None and ns.services.get(job.service, 0) > victim_services.get(job.service, 0):
            return False
        pool = req.pool
        for gs in ns.gpus.values():
            if not gs.usable:
                continue
            share = gs.free_share + freed_share.get(gs.gpu.index, 0)
            mem = gs.free_memory + freed_mem.get(gs.gpu.index, 0)
            if pool is Pool.SHARE and self._share_eligible_mode(gs):
                if share >= (req.gpu_share_milli or 0) and mem >= self._share_memory(gs, req):
                    return True
            elif pool is Pool.MIG:
                ids = {i.id for i in gs.gpu.mig_instances if i.profile == req.mig_profile}
                if set(gs.free_mig.get(req.mig_profile or "", [])) | (ids & freed_mig):
                    return True
            elif pool is Pool.VGPU:
                profile = gs.gpu.vgpu_profile
                free_slots = len(gs.free_vgpu) + freed_vgpu.get(gs.gpu.index, 0)
                if profile is not None and profile.name == req.vgpu_profile and free_slots > 0:
                    return True
        if pool is Pool.WHOLE:
            need_mem = req.gpu_memory_mib or 0
            strict = self.policy.strict_nvlink and req.gpus > 1
            for group in ns.groups.values():
                if strict and group.key == PCIE_GROUP:
                    continue
                count = 0
                for gs in ns.gpus.values():
                    if gs.group is not group or not gs.usable or gs.gpu.memory_mib < need_mem:
                        continue
                    share = gs.free_share + freed_share.get(gs.gpu.index, 0)
                    mem = gs.free_memory + freed_mem.get(gs.gpu.index, 0)
                    if share == 1000 and mem == gs.gpu.memory_mib:
                        count += 1
                if count >= req.gpus:
                    return True
        return pool is Pool.NONE

    def _share_eligible_mode(self, gs: GpuState) -> bool:
        mode = gs.gpu.mode
        return mode is GpuMode.SHARED or (mode is GpuMode.WHOLE and self.policy.shares_on_whole_gpus)

    # ------------------------------------------------------- reservations
    def clear_holds(self) -> None:
        """Forget the backfill reservations of the previous pass (each pass makes its own)."""
        self.holds.clear()
        self.longest_hold_span = 0.0

    def reserve(self, job: Job, now: float) -> Hold | None:
        """Hold the place where ``job``, which fits nowhere now, can start soonest.

        The start time comes from the ``runtime_bound`` of the jobs running now (a PREEMPTING job
        ends at its deadline at the latest); a job in the way without a bound never ends for this
        purpose. None when no node gives a finite time. One hold per node.
        """
        pool = job.request.pool
        best: Hold | None = None
        for ns in self.nodes.values():
            name = ns.node.name
            if pool not in ns.pools or name in self.holds:
                continue
            if name in self.reserved and not self._may_use_reserved(ns, job):
                continue
            hold = self._earliest(ns, job, now)
            if hold is not None and (best is None or hold.until < best.until):
                best = hold
        if best is not None:
            self.holds[best.node] = best
            self.longest_hold_span = max(self.longest_hold_span, best.span)
        return best

    def opportunistic_in_way(self, job: Job, hold: Hold) -> list[Job]:
        """The RUNNING opportunistic jobs to preempt so that ``job`` starts on ``hold``, which is due.

        Those on the held GPUs or of the job's service, then, least work at risk first, as many
        more as the node's CPU and memory need once every job leaving by now has gone.
        """
        ns = self.nodes[hold.node]
        req = job.request
        cpu, memory = ns.free_cpu, ns.free_memory
        chosen: list[Job] = []
        others: list[Job] = []
        for j in ns.jobs.values():
            alloc = self.allocations[j.id]
            if j.id in self.opportunistic and j.state is JobState.RUNNING and j.id not in self.preempting:
                if (job.service is not None and j.service == job.service) or any(
                    sl.gpu in hold.gpus for sl in alloc.slices
                ):
                    chosen.append(j)
                else:
                    others.append(j)
                    continue
            elif self.ends[j.id] > hold.until:
                continue
            cpu += alloc.cpu_milli
            memory += alloc.memory_mib
        others.sort(key=lambda v: (v.work_at_risk_s(hold.until), v.id))
        for v in others:
            if cpu >= req.cpu_milli and memory >= req.memory_mib:
                break
            chosen.append(v)
            cpu += self.allocations[v.id].cpu_milli
            memory += self.allocations[v.id].memory_mib
        return chosen

    def _earliest(self, ns: NodeState, job: Job, now: float) -> Hold | None:
        req = job.request
        if req in ns.earliest:
            gpus = ns.earliest[req]
        else:
            gpus = ns.earliest[req] = self._earliest_gpus(ns, req)
        if gpus is None or gpus[0] == math.inf:
            return None
        ends = self.ends
        until = max(gpus[0], now)  # a job past its bound is being requeued: it leaves now
        if ns.free_cpu < req.cpu_milli or ns.free_memory < req.memory_mib:
            cpu, memory = ns.free_cpu, ns.free_memory
            for j in sorted(ns.jobs.values(), key=lambda j: ends[j.id]):
                alloc = self.allocations[j.id]
                cpu += alloc.cpu_milli
                memory += alloc.memory_mib
                if cpu >= req.cpu_milli and memory >= req.memory_mib:
                    until = max(until, ends[j.id])
                    break
            else:
                return None
        if job.service is not None:
            until = max([until, *(ends[j.id] for j in ns.jobs.values() if j.service == job.service)])
        if until == math.inf:
            return None
        cpu, memory = ns.free_cpu, ns.free_memory
        for j in ns.jobs.values():
            if ends[j.id] <= until:
                alloc = self.allocations[j.id]
                cpu += alloc.cpu_milli
                memory += alloc.memory_mib
        return Hold(job, ns.node.name, until, until - now, gpus[1], cpu - req.cpu_milli, memory - req.memory_mib)

    def _earliest_gpus(self, ns: NodeState, req: ResourceRequest) -> tuple[float, frozenset[int]] | None:
        """When and on which GPUs of ``ns`` the request fits once the jobs there end by their bound.

        Capacity free now counts as free since ``-inf``, so the answer does not depend on the time
        of the pass and stays valid until the jobs on the node change.
        """
        now = -math.inf
        pool = req.pool
        if pool is Pool.NONE:
            return now, _NO_GPUS
        ends = self.ends
        best: tuple[float, frozenset[int]] | None = None
        if pool is Pool.WHOLE:
            need, need_mem = req.gpus, req.gpu_memory_mib or 0
            strict = self.policy.strict_nvlink and need > 1
            for group in ns.groups.values():
                if strict and group.key == PCIE_GROUP:
                    continue
                times = sorted(
                    (max([ends[j] for j in g.holders], default=now), g.gpu.index)
                    for g in group.members
                    if g.usable and g.gpu.memory_mib >= need_mem
                )
                if len(times) >= need and (best is None or times[need - 1][0] < best[0]):
                    best = (times[need - 1][0], frozenset(i for _, i in times[:need]))
            return best
        for gs in ns.gpus.values():
            if not gs.usable:
                continue
            t: float | None = None
            if pool is Pool.SHARE and self._share_eligible_mode(gs):
                share, mem, need_mem = gs.free_share, gs.free_memory, self._share_memory(gs, req)
                need_share = req.gpu_share_milli or 0
                t = now
                if share < need_share or mem < need_mem:
                    for j, sl in sorted(gs.holders.items(), key=lambda h: ends[h[0]]):
                        share += sl.share_milli
                        mem += sl.memory_mib
                        t = ends[j]
                        if share >= need_share and mem >= need_mem:
                            break
                    else:
                        t = None
            elif pool is Pool.MIG:
                ids = [i.id for i in gs.gpu.mig_instances if i.profile == req.mig_profile]
                holders = {sl.mig_instance: ends[j] for j, sl in gs.holders.items()}
                t = min((holders.get(i, now) for i in ids), default=None)
            elif pool is Pool.VGPU:
                profile = gs.gpu.vgpu_profile
                if profile is not None and profile.name == req.vgpu_profile and profile.max_instances > 0:
                    t = now if gs.free_vgpu else min((ends[j] for j in gs.holders), default=None)
            if t is not None and (best is None or t < best[0]):
                best = (t, frozenset({gs.gpu.index}))
        return best
