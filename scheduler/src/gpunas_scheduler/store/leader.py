"""The leader lease: at most one server runs scheduling passes.

The lease lives in the ``leader_term`` row (holder, valid until) and is taken or renewed by one
conditional update at the start of every pass, for SQLite and PostgreSQL alike. A leader that
stops renewing (it died, lost the database, or hangs with its session still open: SIGSTOP, a
stalled VM) loses the lease once it runs out, and another server takes over; the leadership term
(``claim_leadership``) then fences any commit the old leader still attempts. Servers' clocks must
agree to well within the lease (NTP).
"""

from __future__ import annotations

import os
import secrets
import socket

from gpunas_scheduler.service.ports import Clock, Store


def holder_name() -> str:
    """This server process, unique even for two processes on one host: ``host:pid:random``."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseLeaderLock:
    def __init__(self, store: Store, clock: Clock, holder: str, lease_s: float) -> None:
        self.store = store
        self.clock = clock
        self.holder = holder
        self.lease_s = lease_s
        self._held = False

    def try_acquire(self) -> bool:
        self._held = self.store.acquire_lease(self.holder, self.clock(), self.lease_s)
        return self._held

    def release(self) -> None:
        """Hand the lease on at once (at shutdown) rather than letting it run out."""
        if self._held:
            self.store.release_lease(self.holder)
            self._held = False
