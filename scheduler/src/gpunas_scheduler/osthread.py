"""Name the calling thread at the OS level too (Linux ``prctl(PR_SET_NAME)``), so that ``top -H``,
``ps -L`` and ``/proc/<pid>/task/*/comm`` show which of the server's threads uses the CPU."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Callable
from typing import cast

_PR_SET_NAME = 15


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    prctl = getattr(libc, "prctl", None)
    return None if prctl is None else cast(Callable[..., int], prctl)


_PRCTL = _load_prctl()


def name_os_thread() -> None:
    """Give the calling thread its Python name (first 15 bytes) at the OS level; a no-op elsewhere."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_NAME, ctypes.c_char_p(threading.current_thread().name.encode()[:15]), 0, 0, 0)
