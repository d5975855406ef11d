"""SQL store on SQLAlchemy Core: SQLite (WAL, one writer) by default, PostgreSQL (psycopg 3).

All writes go through one writer thread. New jobs are *group-committed*: the writer takes every
submit waiting in its queue, inserts them in one transaction, commits (one fsync with
``synchronous=FULL``) and only then resolves each caller's future, so an acknowledged submit is
on disk while many submits share the cost of one commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from gpunas_scheduler.osthread import name_os_thread
from gpunas_scheduler.service.ports import CeilingExceeded, Changeset, LeadershipLost, StoreUnavailable
from gpunas_scheduler.service.records import (
    CounterDelta,
    CounterKind,
    EventRecord,
    FairshareRecord,
    JobRecord,
    NodeRecord,
    Role,
    TenantEventRecord,
    TenantRecord,
    TokenRecord,
    UserRecord,
)
from gpunas_scheduler.store import schema as t

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(slots=True)
class _Insert:
    job: JobRecord
    event: EventRecord
    future: Future[None]


@dataclass(slots=True)
class _Commit:
    change: Changeset
    future: Future[set[str]]


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, full fsync on commit and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    raise ValueError(f"database_url: unsupported backend {parsed.get_backend_name()!r} (sqlite or postgresql)")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _job_row(job: JobRecord, version: int) -> dict[str, Any]:
    return {
        "id": job.id,
        "tenant": job.tenant,
        "user": job.user,
        "job_class": job.job_class,
        "state": job.state,
        "gpus": job.gpus,
        "submitted_at": job.submitted_at,
        "attempts": job.attempts,
        "node": job.node,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "last_checkpoint_at": job.last_checkpoint_at,
        "preempt_deadline": job.preempt_deadline,
        "preempt_reason": job.preempt_reason,
        "checkpoint_ref": job.checkpoint_ref,
        "reason": job.reason,
        "spec": _dumps(job.spec),
        "allocation": None if job.allocation is None else _dumps(job.allocation),
        "version": version,
        "updated_at": job.updated_at,
    }


_JOB_COLUMNS = list(_job_row(JobRecord("", "", "", 0, "", 0, 0.0, {}), 1))
_EVENT_COLUMNS = ["job_id", "at", "kind", "detail"]


def _job_tuple(job: JobRecord) -> tuple[Any, ...]:
    """A new job (version 1) as a row in ``_JOB_COLUMNS`` order."""
    return (
        job.id,
        job.tenant,
        job.user,
        job.job_class,
        job.state,
        job.gpus,
        job.submitted_at,
        job.attempts,
        job.node,
        job.started_at,
        job.finished_at,
        job.last_checkpoint_at,
        job.preempt_deadline,
        job.preempt_reason,
        job.checkpoint_ref,
        job.reason,
        _dumps(job.spec),
        None if job.allocation is None else _dumps(job.allocation),
        1,
        job.updated_at,
    )


def _event_tuple(ev: EventRecord) -> tuple[Any, ...]:
    return (ev.job_id, ev.at, ev.kind, _dumps(ev.detail))


def _job_record(row: Any, spec_keys: frozenset[str] | None = None) -> JobRecord:
    spec = json.loads(row.spec)
    if spec_keys is not None:
        spec = {k: v for k, v in spec.items() if k in spec_keys}
    return JobRecord(
        id=row.id,
        tenant=sys.intern(row.tenant),
        user=sys.intern(row.user),
        job_class=row.job_class,
        state=sys.intern(row.state),
        gpus=row.gpus,
        submitted_at=row.submitted_at,
        spec=spec,
        attempts=row.attempts,
        node=row.node,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_checkpoint_at=row.last_checkpoint_at,
        preempt_deadline=row.preempt_deadline,
        preempt_reason=row.preempt_reason,
        checkpoint_ref=row.checkpoint_ref,
        allocation=None if row.allocation is None else json.loads(row.allocation),
        reason=row.reason,
        updated_at=row.updated_at,
        version=row.version,
    )


def _event_row(ev: EventRecord) -> dict[str, Any]:
    return {"job_id": ev.job_id, "at": ev.at, "kind": ev.kind, "detail": _dumps(ev.detail)}


class SqlStore:
    """The :class:`~gpunas_scheduler.service.ports.Store` on a SQL database."""

    def __init__(self, url: str, *, batch_max: int = 1024, gather_s: float = 0.002) -> None:
        self.engine = make_engine(url)
        self._dialect = self.engine.dialect.name
        dbapi = self.engine.dialect.loaded_dbapi
        # What a database outage raises: DB-API OperationalError (cannot connect, connection lost,
        # disk I/O error, locked) and InterfaceError (a connection already closed).
        self._outage: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        event.listen(self.engine, "handle_error", self._raise_unavailable)
        self._batch_max = batch_max
        self._gather_s = gather_s
        self._sql_jobs: str | None = None
        self._sql_events = ""
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._run_writer, name="store-writer", daemon=True)
        self._closed = False
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._writer.start()
        if self._dialect == "sqlite":
            # Checkpoints copy the WAL into the database file and fsync it. Left to SQLite they run
            # inside a committing transaction and stall every submit waiting on that commit;
            # here a separate connection runs them (PASSIVE: never blocks the writer).
            self._checkpointer = threading.Thread(target=self._run_checkpoints, name="wal-checkpoint", daemon=True)
            self._checkpointer.start()

    def _run_checkpoints(self) -> None:
        name_os_thread()
        while not self._stop_checkpoints.wait(1.0):
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # a busy or failed checkpoint is retried a second later
                log.debug("WAL checkpoint failed", exc_info=True)

    # ----------------------------------------------------------------- writes
    def insert_job(self, job: JobRecord, event: EventRecord) -> Future[None]:
        fut: Future[None] = Future()
        if self._closed:
            fut.set_exception(RuntimeError("store is closed"))
            return fut
        self._queue.put(_Insert(job, event, fut))
        return fut

    def commit(self, change: Changeset) -> set[str]:
        if self._closed:
            raise RuntimeError("store is closed")
        fut: Future[set[str]] = Future()
        self._queue.put(_Commit(change, fut))
        return fut.result()

    def _run_writer(self) -> None:
        name_os_thread()
        conn = self.engine.connect()
        if self._dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            conn.commit()
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if self._gather_s > 0:
                    # Group-commit window (PostgreSQL's commit_delay): sleeping instead of
                    # taking items one by one means submits arriving now do not wake this
                    # thread, which would otherwise contend with the request handlers for the
                    # interpreter after every single request.
                    time.sleep(self._gather_s)
                batch: list[object] = [item]
                stop = False
                while len(batch) < self._batch_max:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                inserts = [b for b in batch if isinstance(b, _Insert)]
                if inserts:
                    self._write_inserts(conn, inserts)
                for b in batch:
                    if isinstance(b, _Commit):
                        self._write_change(conn, b)
                if stop:
                    return
        finally:
            conn.close()

    def _unavailable(self, exc: BaseException) -> BaseException:
        """``exc`` as :class:`StoreUnavailable` if it is an outage, else unchanged. sqlite3 raises
        OperationalError for a missing table or bad SQL too (SQLITE_ERROR): that is no outage."""
        if isinstance(exc, self._outage) and getattr(exc, "sqlite_errorname", None) != "SQLITE_ERROR":
            unavailable = StoreUnavailable(f"database unavailable: {exc}")
            unavailable.__cause__ = exc
            return unavailable
        return exc

    def _raise_unavailable(self, context: Any) -> None:
        # SQLAlchemy's handle_error hook: raising here replaces the error it would raise.
        unavailable = self._unavailable(context.original_exception)
        if isinstance(unavailable, StoreUnavailable):
            raise unavailable

    def _insert_sql(self, table: Any, columns: list[str]) -> str:
        mark = "?" if self._dialect == "sqlite" else "%s"
        quoted = ", ".join(self.engine.dialect.identifier_preparer.quote(c) for c in columns)
        return f"INSERT INTO {table.name} ({quoted}) VALUES ({', '.join([mark] * len(columns))})"

    def _write_inserts(self, conn: Connection, items: list[_Insert]) -> None:
        # The submit hot path: plain DB-API executemany with positional rows and the driver's
        # own commit. SQLAlchemy's insert construct costs several times more CPU per row, and
        # its transaction and statement bookkeeping about as much per commit as SQLite's commit
        # itself; the writer shares the GIL with the request handlers. Both drivers open the
        # transaction implicitly at the first INSERT (sqlite3's legacy mode, psycopg without
        # autocommit), and nothing else uses this connection meanwhile.
        if self._sql_jobs is None:
            self._sql_jobs = self._insert_sql(t.jobs, _JOB_COLUMNS)
            self._sql_events = self._insert_sql(t.job_events, _EVENT_COLUMNS)
        raw: Any = conn.connection.dbapi_connection
        try:
            cur = raw.cursor()
            try:
                cur.executemany(self._sql_jobs, [_job_tuple(i.job) for i in items])
                cur.executemany(self._sql_events, [_event_tuple(i.event) for i in items])
            finally:
                cur.close()
            raw.commit()
        except Exception as exc:  # every waiting caller must learn that its submit failed
            log.exception("group commit of %d jobs failed", len(items))
            with contextlib.suppress(Exception):
                raw.rollback()
            failure = self._unavailable(exc)
            for i in items:
                i.future.set_exception(failure)
            return
        for i in items:
            i.future.set_result(None)

    def _write_change(self, conn: Connection, item: _Commit) -> None:
        try:
            with conn.begin():
                conflicts = self._apply(conn, item.change)
        except Exception as exc:  # the caller re-raises it
            item.future.set_exception(exc)
            return
        item.future.set_result(conflicts)

    def _insert_for(self, table: Any) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _add_within_ceiling(self, conn: Connection, c: CounterDelta, ceiling: float) -> None:
        """One conditional upsert: the row lock it takes makes check and count atomic, also
        between servers sharing a PostgreSQL database."""
        refused = CeilingExceeded(f"{c.kind} of {c.tenant} for {c.period} would pass {ceiling}")
        if c.delta > ceiling:
            raise refused
        value = t.usage_counters.c.value
        stmt = self._insert_for(t.usage_counters).values(
            tenant=c.tenant, kind=str(c.kind), period=c.period, value=c.delta
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant", "kind", "period"],
            set_={"value": value + stmt.excluded.value},
            where=value + stmt.excluded.value <= ceiling,
        ).returning(value)
        if conn.execute(stmt).first() is None:
            raise refused

    def _upsert(self, conn: Connection, table: Any, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
        if not rows:
            return
        stmt = self._insert_for(table)
        cols = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=cols), list(rows))

    def _apply(self, conn: Connection, ch: Changeset) -> set[str]:
        if ch.term is not None:
            # First statement: it takes the row lock that claim_leadership's update waits for.
            term = t.leader_term
            fenced = update(term).where(term.c.id == 1, term.c.term == ch.term).values(term=ch.term)
            if conn.execute(fenced).rowcount != 1:
                raise LeadershipLost(f"leadership term {ch.term} is over")
        for c in ch.counters:
            if c.ceiling is not None:
                self._add_within_ceiling(conn, c, c.ceiling)
        self._upsert(
            conn,
            t.tenants,
            [
                {
                    "name": x.name,
                    "fairshare_weight": x.fairshare_weight,
                    "api_calls_per_day": x.api_calls_per_day,
                    "gpu_hours_per_month": x.gpu_hours_per_month,
                    "upload_bytes_per_month": x.upload_bytes_per_month,
                    "created_at": x.created_at,
                }
                for x in ch.tenants
            ],
            ["name"],
        )
        self._upsert(
            conn,
            t.users,
            [{"name": x.name, "role": str(x.role), "tenant": x.tenant, "created_at": x.created_at} for x in ch.users],
            ["name"],
        )
        self._upsert(
            conn,
            t.tokens,
            [
                {
                    "id": x.id,
                    "user": x.user,
                    "secret_hash": x.secret_hash,
                    "expires_at": x.expires_at,
                    "created_at": x.created_at,
                    "revoked_at": x.revoked_at,
                    "parent": x.parent,
                }
                for x in ch.tokens
            ],
            ["id"],
        )
        self._upsert(
            conn,
            t.nodes,
            [
                {
                    "name": x.name,
                    "spec": _dumps(x.spec),
                    "drained": x.drained,
                    "down": x.down,
                    "last_heartbeat": x.last_heartbeat,
                    "registered_at": x.registered_at,
                }
                for x in ch.nodes
            ],
            ["name"],
        )
        conflicts: set[str] = set()
        for job, expected in ch.jobs:
            if expected == 0:
                conn.execute(t.jobs.insert(), [_job_row(job, 1)])
                continue
            row = _job_row(job, expected + 1)
            del row["id"]
            del row["spec"]
            res = conn.execute(update(t.jobs).where(t.jobs.c.id == job.id, t.jobs.c.version == expected).values(**row))
            if res.rowcount != 1:
                conflicts.add(job.id)
        events = [_event_row(e) for e in ch.job_events if e.job_id not in conflicts]
        if events:
            conn.execute(t.job_events.insert(), events)
        if ch.tenant_events:
            conn.execute(
                t.tenant_events.insert(),
                [
                    {"tenant": e.tenant, "at": e.at, "kind": e.kind, "detail": _dumps(e.detail)}
                    for e in ch.tenant_events
                ],
            )
        if ch.counters:
            stmt = self._insert_for(t.usage_counters)
            stmt = stmt.on_conflict_do_update(
                index_elements=["tenant", "kind", "period"],
                set_={"value": t.usage_counters.c.value + stmt.excluded.value},
            )
            merged: dict[tuple[str, str, str], float] = {}
            for c in ch.counters:
                if c.ceiling is not None:
                    continue
                key = (c.tenant, str(c.kind), c.period)
                merged[key] = merged.get(key, 0.0) + c.delta
            if merged:
                rows = [{"tenant": k[0], "kind": k[1], "period": k[2], "value": v} for k, v in merged.items()]
                conn.execute(stmt, rows)
        self._upsert(
            conn,
            t.fairshare_usage,
            [
                {"tenant": f.tenant, "decayed_gpu_seconds": f.decayed_gpu_seconds, "updated_at": f.updated_at}
                for f in ch.fairshare
            ],
            ["tenant"],
        )
        return conflicts

    # ------------------------------------------------------------------ reads
    def get_job(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.jobs).where(t.jobs.c.id == job_id)).first()
        return None if row is None else _job_record(row)

    def list_jobs(
        self,
        *,
        tenant: str | None,
        states: Iterable[str] | None,
        limit: int,
        before: str | None,
    ) -> list[JobRecord]:
        q = select(t.jobs)
        if tenant is not None:
            q = q.where(t.jobs.c.tenant == tenant)
        if states is not None:
            q = q.where(t.jobs.c.state.in_(list(states)))
        if before is not None:
            q = q.where(t.jobs.c.id < before)
        q = q.order_by(t.jobs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_job_record(r) for r in conn.execute(q)]

    def active_jobs(self, states: Iterable[str], spec_keys: frozenset[str] | None = None) -> Iterator[JobRecord]:
        q = select(t.jobs).where(t.jobs.c.state.in_(list(states))).order_by(t.jobs.c.id)
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                yield _job_record(r, spec_keys)

    def job_versions(self, state: str) -> list[tuple[str, int]]:
        # Plain DB-API: called every pass over possibly 100,000 rows, where SQLAlchemy's row
        # processing would cost more than the query.
        mark = "?" if self._dialect == "sqlite" else "%s"
        with self.engine.connect() as conn:
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cur.execute(f"SELECT id, version FROM jobs WHERE state = {mark}", (state,))
                rows: list[tuple[str, int]] = cur.fetchall()  # tuples from both drivers
                return rows
            finally:
                cur.close()

    def jobs_by_id(self, ids: Sequence[str], spec_keys: frozenset[str] | None = None) -> list[JobRecord]:
        out: list[JobRecord] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                q = select(t.jobs).where(t.jobs.c.id.in_(list(ids[start : start + 500])))
                out.extend(_job_record(r, spec_keys) for r in conn.execute(q))
        return out

    def job_events(self, job_id: str, limit: int) -> list[EventRecord]:
        q = select(t.job_events).where(t.job_events.c.job_id == job_id).order_by(t.job_events.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [
                EventRecord(job_id=r.job_id, at=r.at, kind=r.kind, detail=json.loads(r.detail), seq=r.seq)
                for r in conn.execute(q)
            ]

    def tenant_events(self, tenant: str, limit: int) -> list[TenantEventRecord]:
        q = (
            select(t.tenant_events)
            .where(t.tenant_events.c.tenant == tenant)
            .order_by(t.tenant_events.c.seq.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                TenantEventRecord(tenant=r.tenant, at=r.at, kind=r.kind, detail=json.loads(r.detail))
                for r in conn.execute(q)
            ]

    @staticmethod
    def _tenant(r: Any) -> TenantRecord:
        return TenantRecord(
            name=r.name,
            fairshare_weight=r.fairshare_weight,
            api_calls_per_day=r.api_calls_per_day,
            gpu_hours_per_month=r.gpu_hours_per_month,
            upload_bytes_per_month=r.upload_bytes_per_month,
            created_at=r.created_at,
        )

    def get_tenant(self, name: str) -> TenantRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.tenants).where(t.tenants.c.name == name)).first()
        return None if row is None else self._tenant(row)

    def list_tenants(self) -> list[TenantRecord]:
        with self.engine.connect() as conn:
            return [self._tenant(r) for r in conn.execute(select(t.tenants).order_by(t.tenants.c.name))]

    @staticmethod
    def _user(r: Any) -> UserRecord:
        return UserRecord(name=r.name, role=Role(r.role), tenant=r.tenant, created_at=r.created_at)

    def get_user(self, name: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users).where(t.users.c.name == name)).first()
        return None if row is None else self._user(row)

    def list_users(self, tenant: str | None) -> list[UserRecord]:
        q = select(t.users).order_by(t.users.c.name)
        if tenant is not None:
            q = q.where(t.users.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [self._user(r) for r in conn.execute(q)]

    @staticmethod
    def _token(r: Any) -> TokenRecord:
        return TokenRecord(
            id=r.id,
            user=r.user,
            secret_hash=r.secret_hash,
            expires_at=r.expires_at,
            created_at=r.created_at,
            revoked_at=r.revoked_at,
            parent=r.parent,
        )

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.tokens).where(t.tokens.c.id == token_id)).first()
        return None if row is None else self._token(row)

    def list_tokens(self, user: str | None) -> list[TokenRecord]:
        q = select(t.tokens).order_by(t.tokens.c.created_at)
        if user is not None:
            q = q.where(t.tokens.c.user == user)
        with self.engine.connect() as conn:
            return [self._token(r) for r in conn.execute(q)]

    @staticmethod
    def _node(r: Any) -> NodeRecord:
        return NodeRecord(
            name=r.name,
            spec=json.loads(r.spec),
            drained=bool(r.drained),
            down=bool(r.down),
            last_heartbeat=r.last_heartbeat,
            registered_at=r.registered_at,
        )

    def get_node(self, name: str) -> NodeRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.nodes).where(t.nodes.c.name == name)).first()
        return None if row is None else self._node(row)

    def list_nodes(self) -> list[NodeRecord]:
        with self.engine.connect() as conn:
            return [self._node(r) for r in conn.execute(select(t.nodes).order_by(t.nodes.c.name))]

    def counters(self, tenant: str, periods: dict[CounterKind, str]) -> dict[CounterKind, float]:
        out = {k: 0.0 for k in periods}
        with self.engine.connect() as conn:
            for kind, period in periods.items():
                row = conn.execute(
                    select(t.usage_counters.c.value).where(
                        t.usage_counters.c.tenant == tenant,
                        t.usage_counters.c.kind == str(kind),
                        t.usage_counters.c.period == period,
                    )
                ).first()
                if row is not None:
                    out[kind] = float(row.value)
        return out

    def fairshare(self) -> dict[str, FairshareRecord]:
        with self.engine.connect() as conn:
            return {
                r.tenant: FairshareRecord(r.tenant, r.decayed_gpu_seconds, r.updated_at)
                for r in conn.execute(select(t.fairshare_usage))
            }

    def claim_leadership(self) -> int:
        term = t.leader_term
        with self.engine.begin() as conn:
            conn.execute(update(term).where(term.c.id == 1).values(term=term.c.term + 1))
            return int(conn.execute(select(term.c.term).where(term.c.id == 1)).scalar_one())

    def acquire_lease(self, holder: str, now: float, lease_s: float) -> bool:
        term = t.leader_term
        free = or_(term.c.holder.is_(None), term.c.holder == holder, term.c.lease_until < now)
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(term).where(term.c.id == 1, free).values(holder=holder, lease_until=now + lease_s)
            )
            return taken.rowcount == 1

    def release_lease(self, holder: str) -> None:
        term = t.leader_term
        with self.engine.begin() as conn:
            mine = update(term).where(term.c.id == 1, term.c.holder == holder)
            conn.execute(mine.values(holder=None, lease_until=None))

    def count_jobs(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.jobs)).scalar_one())

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=30)
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join(timeout=30)
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.engine.dispose()
