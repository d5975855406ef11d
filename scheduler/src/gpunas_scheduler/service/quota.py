"""API-call quota: counted in memory per request, flushed to the store in batches.

Each request of a tenant user counts one call for the tenant's current UTC day. The count is the
stored total (refreshed at every flush, so calls served by other servers are included) plus the
calls this server has not flushed yet. At 80 % a warning event is written and a metric is
raised; at 100 % requests are refused with 429 until the day rolls over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from gpunas_scheduler.domain.accounting import day_key
from gpunas_scheduler.service.metrics import Metrics
from gpunas_scheduler.service.ports import Changeset, Clock, Store
from gpunas_scheduler.service.records import CounterDelta, CounterKind, TenantEventRecord


@dataclass(slots=True)
class _Day:
    day: str
    stored: float
    pending: int = 0
    warned: bool = False


class ApiCallMeter:
    def __init__(self, store: Store, clock: Clock, metrics: Metrics, *, warning_ratio: float = 0.8) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._warning = warning_ratio
        self._days: dict[str, _Day] = {}
        self._lock = threading.Lock()
        self._events: list[TenantEventRecord] = []
        # Calls counted on a day that has ended but not yet written: kept for the next flush.
        self._carry: list[CounterDelta] = []
        self._day_span = (0.0, 0.0, "")  # [start, end) of the UTC day last seen, and its key

    def _day(self, now: float) -> str:
        """``day_key(now)``, formatted once per day (Unix time has 86,400 s per UTC day): this
        runs on every request."""
        start, end, key = self._day_span
        if not start <= now < end:
            start = (now // 86400.0) * 86400.0
            key = day_key(start)
            self._day_span = (start, start + 86400.0, key)
        return key

    def _state(self, tenant: str, day: str) -> _Day:
        st = self._days.get(tenant)
        if st is None or st.day != day:
            if st is not None and st.pending:
                self._carry.append(CounterDelta(tenant, CounterKind.API_CALLS, st.day, float(st.pending)))
            stored = self._store.counters(tenant, {CounterKind.API_CALLS: day})[CounterKind.API_CALLS]
            st = _Day(day=day, stored=stored)
            self._days[tenant] = st
        return st

    def admit(self, tenant: str, limit: int | None) -> bool:
        """Count one call; return False (and count nothing) when the quota is used up."""
        now = self._clock()
        day = self._day(now)
        with self._lock:
            st = self._state(tenant, day)
            used = st.stored + st.pending
            if limit is not None and used + 1 > limit:
                self._metrics.api_refusals.labels(tenant).inc()
                self._metrics.quota_ratio.labels(tenant, "api_calls_per_day").set(used / limit if limit else 1.0)
                return False
            st.pending += 1
            if limit is not None and limit > 0:
                ratio = (used + 1) / limit
                self._metrics.quota_ratio.labels(tenant, "api_calls_per_day").set(ratio)
                if ratio >= self._warning and not st.warned:
                    st.warned = True
                    self._metrics.quota_warnings.labels(tenant, "api_calls_per_day", "warning").inc()
                    self._events.append(
                        TenantEventRecord(
                            tenant=tenant,
                            at=now,
                            kind="quota_warning",
                            detail={"quota": "api_calls_per_day", "used": used + 1, "limit": limit, "day": day},
                        )
                    )
            return True

    def flush(self) -> None:
        """Write pending counts and warnings in one transaction, then refresh stored totals."""
        with self._lock:
            deltas = [
                CounterDelta(tenant, CounterKind.API_CALLS, st.day, float(st.pending))
                for tenant, st in self._days.items()
                if st.pending
            ]
            carried, self._carry = self._carry, []
            deltas.extend(carried)
            events, self._events = self._events, []
            flushed = {tenant: (st.day, st.pending) for tenant, st in self._days.items() if st.pending}
            for st in self._days.values():
                st.stored += st.pending
                st.pending = 0
        if not deltas and not events:
            return
        try:
            self._store.commit(Changeset(counters=deltas, tenant_events=events))
        except Exception:
            with self._lock:
                for tenant, (day, n) in flushed.items():
                    cur = self._days.get(tenant)
                    if cur is not None and cur.day == day:
                        cur.stored -= n
                        cur.pending += n
                    else:
                        self._carry.append(CounterDelta(tenant, CounterKind.API_CALLS, day, float(n)))
                self._carry[:0] = carried
                self._events[:0] = events
            raise
        for tenant, (day, _) in flushed.items():
            total = self._store.counters(tenant, {CounterKind.API_CALLS: day})[CounterKind.API_CALLS]
            with self._lock:
                cur = self._days.get(tenant)
                if cur is not None and cur.day == day:
                    cur.stored = max(cur.stored, total)

    def used(self, tenant: str) -> float:
        day = self._day(self._clock())
        with self._lock:
            st = self._state(tenant, day)
            return st.stored + st.pending
