"""Interfaces the service layer needs from the outside world (store, leader lock, clock)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from gpunas_scheduler.service.records import (
    CounterDelta,
    CounterKind,
    EventRecord,
    FairshareRecord,
    JobRecord,
    NodeRecord,
    TenantEventRecord,
    TenantRecord,
    TokenRecord,
    UserRecord,
)


class Clock(Protocol):
    def __call__(self) -> float:
        """Return the current time in seconds since the epoch."""


def system_clock() -> float:
    return time.time()


class LeadershipLost(Exception):
    """A commit carried a leadership term that is over: another server leads now."""


class StoreUnavailable(Exception):
    """The database cannot be reached or cannot answer now (an outage); the request may be retried."""


class CeilingExceeded(Exception):
    """A counter delta would pass its ceiling; nothing of the changeset was written."""


@dataclass(slots=True)
class Changeset:
    """Writes applied in one transaction.

    ``jobs`` are conditional updates: each record carries the version it was read at and is
    written only if the stored version still matches. A job's spec is immutable after submit and
    is never rewritten by an update (optimistic concurrency between the
    scheduling loop and API calls, also across servers sharing one PostgreSQL database).

    ``term``, set by the scheduling loop, fences the commit: unless the stored leadership term
    still equals it, nothing is written and :class:`LeadershipLost` is raised.
    """

    tenants: list[TenantRecord] = field(default_factory=list)
    users: list[UserRecord] = field(default_factory=list)
    tokens: list[TokenRecord] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)
    jobs: list[tuple[JobRecord, int]] = field(default_factory=list)
    job_events: list[EventRecord] = field(default_factory=list)
    tenant_events: list[TenantEventRecord] = field(default_factory=list)
    counters: list[CounterDelta] = field(default_factory=list)
    fairshare: list[FairshareRecord] = field(default_factory=list)
    term: int | None = None

    def empty(self) -> bool:
        return not (
            self.tenants
            or self.users
            or self.tokens
            or self.nodes
            or self.jobs
            or self.job_events
            or self.tenant_events
            or self.counters
            or self.fairshare
        )


class Store(Protocol):
    """Durable state. Writes are serialised through one writer; reads may run concurrently."""

    def insert_job(self, job: JobRecord, event: EventRecord) -> Future[None]:
        """Queue a new job for the next group commit; the future resolves once it is durable."""

    def commit(self, change: Changeset) -> set[str]:
        """Apply ``change`` atomically; return ids of jobs whose version check failed.

        Events of a conflicting job are dropped with it.
        """

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def list_jobs(
        self,
        *,
        tenant: str | None,
        states: Iterable[str] | None,
        limit: int,
        before: str | None,
    ) -> list[JobRecord]:
        """Newest first (ids are time-ordered); ``before`` is an exclusive id cursor."""

    def active_jobs(self, states: Iterable[str], spec_keys: frozenset[str] | None = None) -> Iterator[JobRecord]:
        """Jobs in ``states``, oldest first, streamed; with ``spec_keys`` only those keys of each
        spec are kept (the scheduling loop does not need images, commands or environments).
        Consume the iterator fully: it holds a database connection until then."""

    def job_versions(self, state: str) -> list[tuple[str, int]]:
        """``(id, version)`` of every job in ``state``, in no particular order: lets the scheduling
        loop re-read only the jobs that are new or changed since its last pass."""

    def jobs_by_id(self, ids: Sequence[str], spec_keys: frozenset[str] | None = None) -> list[JobRecord]:
        """The jobs among ``ids`` that exist, in no particular order; ``spec_keys`` as for
        :meth:`active_jobs`."""

    def job_events(self, job_id: str, limit: int) -> list[EventRecord]: ...

    def tenant_events(self, tenant: str, limit: int) -> list[TenantEventRecord]: ...

    def get_tenant(self, name: str) -> TenantRecord | None: ...

    def list_tenants(self) -> list[TenantRecord]: ...

    def get_user(self, name: str) -> UserRecord | None: ...

    def list_users(self, tenant: str | None) -> list[UserRecord]: ...

    def get_token(self, token_id: str) -> TokenRecord | None: ...

    def list_tokens(self, user: str | None) -> list[TokenRecord]: ...

    def get_node(self, name: str) -> NodeRecord | None: ...

    def list_nodes(self) -> list[NodeRecord]: ...

    def counters(self, tenant: str, periods: dict[CounterKind, str]) -> dict[CounterKind, float]: ...

    def fairshare(self) -> dict[str, FairshareRecord]: ...

    def claim_leadership(self) -> int:
        """Start a new leadership term and return it; commits fenced by an older term fail from now on.

        Waits for a fenced commit in progress, so that the new leader reads its writes."""

    def acquire_lease(self, holder: str, now: float, lease_s: float) -> bool:
        """Take or renew the leader lease until ``now + lease_s``, in one conditional update: only
        if it is free, expired or already ``holder``'s. False while another holder's is valid."""

    def release_lease(self, holder: str) -> None:
        """Give the lease up if ``holder`` has it."""

    def count_jobs(self) -> int: ...

    def ping(self) -> None:
        """Raise if the database cannot answer."""

    def close(self) -> None: ...


class LeaderLock(Protocol):
    """Makes sure at most one server runs scheduling passes at a time (with the term fencing
    the commits of a leader that lost the lock mid-pass)."""

    def try_acquire(self) -> bool:
        """Return True while this process holds the lock (acquiring it if free)."""

    def release(self) -> None: ...
