"""Migrations agree with the table definitions; leader locks exclude a second scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from support.env import PgCluster

from gpunas_scheduler.store import migrate
from gpunas_scheduler.store.leader import FileLeaderLock, PgAdvisoryLeaderLock, leader_lock_for
from gpunas_scheduler.store.schema import metadata
from gpunas_scheduler.store.sql import make_engine


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


def test_file_lock_is_exclusive(tmp_path: Path) -> None:
    a = leader_lock_for(f"sqlite:///{tmp_path / 'x.db'}")
    b = leader_lock_for(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(a, FileLeaderLock)
    assert a.try_acquire()
    assert a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()


def test_memory_sqlite_cannot_lead() -> None:
    with pytest.raises(ValueError, match="database_url"):
        leader_lock_for("sqlite:///:memory:")


def test_pg_advisory_lock_excludes_and_survives_only_with_its_connection(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("leader")
    a, b = PgAdvisoryLeaderLock(url), PgAdvisoryLeaderLock(url)
    assert a.try_acquire()
    assert a.try_acquire()
    assert not b.try_acquire()
    # Kill a's session from outside, as a crashed or partitioned server would lose it.
    import psycopg

    with psycopg.connect(
        host=pg_cluster.socket_dir, port=pg_cluster.port, user="postgres", dbname="leader", autocommit=True
    ) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        ).fetchall()
    assert killed == [(True,)]
    assert not a.try_acquire()  # a notices that its session, and so the lock, is gone
    assert b.try_acquire()
    assert not a.try_acquire()
    b.release()
    assert a.try_acquire()
    a.release()
