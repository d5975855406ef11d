"""Leader locks: at most one server runs scheduling passes.

SQLite is single-host, so an exclusive ``flock`` on a file next to the database is enough.
PostgreSQL uses a session-level advisory lock held on a dedicated connection: if that server dies
or loses its connection, PostgreSQL releases the lock and another server takes over.
"""

from __future__ import annotations

import fcntl
import logging
import os
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from gpunas_scheduler.store.sql import make_lock_engine

log = logging.getLogger(__name__)

# Arbitrary constant identifying the scheduler's advisory lock ("gpunas" in ASCII).
ADVISORY_LOCK_KEY = 0x6770756E6173


class FileLeaderLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._fh is not None:
            return True
        fh = open(self.path, "ab")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class PgAdvisoryLeaderLock:
    def __init__(self, url: str, key: int = ADVISORY_LOCK_KEY) -> None:
        self._engine = make_lock_engine(url)
        self._key = key
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            try:
                held = self._conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND pid = pg_backend_pid() AND objid = :lo AND classid = :hi"
                    ),
                    {"lo": self._key & 0xFFFFFFFF, "hi": self._key >> 32},
                ).scalar_one()
                self._conn.commit()
            except Exception:  # a broken connection means the lock is gone
                log.warning("leader lock connection lost", exc_info=True)
                self._drop()
                return False
            if held:
                return True
            self._drop()
            return False
        try:
            conn = self._engine.connect()
        except Exception:
            log.warning("cannot connect for the leader lock", exc_info=True)
            return False
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar_one())
        conn.commit()
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken; nothing left to release
                log.debug("closing lost leader connection failed", exc_info=True)
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            finally:
                self._drop()
        self._engine.dispose()


def leader_lock_for(url: str) -> FileLeaderLock | PgAdvisoryLeaderLock:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:"):
            raise ValueError("database_url: an in-memory SQLite database cannot be shared; use a file")
        return FileLeaderLock(os.path.abspath(db) + ".leader")
    return PgAdvisoryLeaderLock(url)
