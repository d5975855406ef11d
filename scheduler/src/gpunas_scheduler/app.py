"""Composition root: the only place that wires store, service, loop and API together."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, cast

from fastapi import FastAPI

from gpunas_scheduler.api.app import create_app
from gpunas_scheduler.config import Config
from gpunas_scheduler.domain.model import JobClass, Policy
from gpunas_scheduler.osthread import name_os_thread
from gpunas_scheduler.service.convert import ClassLimits
from gpunas_scheduler.service.core import DEFAULT_CLASS_ACCESS, ClassAccess, SchedulerService, Settings
from gpunas_scheduler.service.loop import SchedulingLoop
from gpunas_scheduler.service.metrics import Metrics
from gpunas_scheduler.service.ports import Clock, system_clock
from gpunas_scheduler.service.records import Role
from gpunas_scheduler.store import migrate
from gpunas_scheduler.store.leader import LeaseLeaderLock, holder_name
from gpunas_scheduler.store.sql import SqlStore

log = logging.getLogger(__name__)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    return None if trim is None else cast(Callable[[int], int], trim)


_MALLOC_TRIM = _load_malloc_trim()


def _release_free_memory() -> None:
    """Hand the memory a pass freed back to the OS (glibc keeps it in its arenas otherwise)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def settings_from(config: Config) -> Settings:
    base = Policy()
    policy = replace(
        base,
        half_life_s=config.fairshare_half_life_s,
        quota_warning_ratio=config.quota_warning_ratio,
        max_runtime_s={**base.max_runtime_s, JobClass.TRAINING: config.training_max_runtime_s},
    )
    access = dict(DEFAULT_CLASS_ACCESS)
    limits = {}
    for name, e in config.classes.items():
        job_class = JobClass[name.upper()]
        default = access.get(job_class, ClassAccess())
        access[job_class] = ClassAccess(
            tenants=default.tenants if e.tenants is None else frozenset(e.tenants),
            roles=None if e.roles is None else frozenset(Role(r) for r in e.roles),
        )
        limits[job_class] = ClassLimits(float(e.max_min_runtime_s), float(e.max_checkpoint_grace_s))
    return Settings(
        policy=policy,
        class_access={c: a for c, a in access.items() if a != ClassAccess()},
        class_limits=limits,
        heartbeat_timeout_s=config.heartbeat_timeout_s,
        default_token_ttl_s=config.default_token_ttl_s,
        token_cache_ttl_s=config.token_cache_ttl_s,
        tenant_nas_paths={tenant: tuple(paths) for tenant, paths in config.tenant_nas_paths.items()},
    )


@dataclass
class Server:
    config: Config
    store: SqlStore
    service: SchedulerService
    loop: SchedulingLoop
    app: FastAPI
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def tick(self) -> None:
        """Flush API-call counters, then run a scheduling pass if this server leads."""
        self.service.meter.flush()
        if self.loop.run_once() is not None:
            _release_free_memory()

    def _run(self) -> None:
        name_os_thread()
        pause = self.config.schedule_interval_s
        while not self._stop.wait(pause):
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # keep scheduling; the next tick retries with fresh state
                log.exception("scheduler tick failed")
            # A pass over a very long queue must not starve the API of the interpreter: wait at
            # least twice as long as the pass took, so it uses at most a third of the time.
            pause = max(self.config.schedule_interval_s, 2 * (time.monotonic() - started))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="scheduler-loop", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self.service.meter.flush()
        finally:
            self.loop.lock.release()
            self.store.close()


def build(config: Config, *, clock: Clock = system_clock, run_loop: bool = True) -> Server:
    store = SqlStore(config.database_url)
    metrics = Metrics()
    service = SchedulerService(store, clock, metrics, settings_from(config))
    loop = SchedulingLoop(service, LeaseLeaderLock(store, clock, holder_name(), config.leader_lease_s))
    expected = migrate.head()

    def ready() -> dict[str, Any]:
        store.ping()
        current = migrate.current(store.engine)
        if current != expected:
            raise RuntimeError(f"database schema at {current}, expected {expected}: run 'gpunas-scheduler migrate'")
        return {"schema": current, "leader": loop.is_leader}

    holder: dict[str, Server] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_loop:
            holder["server"].start()
        try:
            yield
        finally:
            holder["server"].stop()

    app = create_app(
        service,
        ready=ready,
        max_body_bytes=config.max_body_bytes,
        metrics_public=config.metrics_public,
        lifespan=lifespan,
    )
    server = Server(config=config, store=store, service=service, loop=loop, app=app)
    holder["server"] = server
    return server


def configure_logging(config: Config) -> None:
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.log_level != "debug":
        # Readiness probes check the schema revision; alembic would log two lines per probe.
        logging.getLogger("alembic").setLevel(logging.WARNING)
