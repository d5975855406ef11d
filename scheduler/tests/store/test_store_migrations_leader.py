"""Migrations agree with the table definitions; the leader lease excludes a second scheduler until it expires."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from support.env import FakeClock, PgCluster, seed

from gpunas_scheduler.service.loop import SchedulingLoop
from gpunas_scheduler.store import migrate
from gpunas_scheduler.store.leader import LeaseLeaderLock
from gpunas_scheduler.store.schema import metadata
from gpunas_scheduler.store.sql import SqlStore, make_engine


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def test_sqlite_migrations_match_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert _diff(url) == []
    engine = make_engine(url)
    assert migrate.current(engine) == migrate.head()
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        # 2 = FULL: a commit is fsynced before the writer acknowledges it.
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2
    engine.dispose()


def test_postgresql_migrations_match_schema_and_downgrade(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("migrations")
    assert _diff(url) == []
    engine = create_engine(url)
    cfg_tables = set(inspect(engine).get_table_names())
    assert {"jobs", "job_events", "tenants", "tokens", "users", "nodes", "usage_counters"} <= cfg_tables
    from alembic import command

    cfg = migrate._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    engine.dispose()


def test_a_hung_leader_loses_the_lease_and_another_server_takes_over(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}")
    migrate.upgrade(store.engine)
    clock = FakeClock()
    svc = seed(store, clock).service
    a = SchedulingLoop(svc, LeaseLeaderLock(store, clock, "server-a", lease_s=10.0))
    b = SchedulingLoop(svc, LeaseLeaderLock(store, clock, "server-b", lease_s=10.0))
    try:
        assert a.run_once() is not None
        clock.advance(5)
        assert b.run_once() is None and a.run_once() is not None
        clock.advance(10.5)  # a stops (SIGSTOP) for longer than its lease
        assert b.run_once() is not None and b.is_leader
        assert a.run_once() is None and not a.is_leader  # a resumes: b leads
        b.lock.release()
        assert a.run_once() is not None
    finally:
        store.close()
