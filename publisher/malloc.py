"""Giving a page's memory back to the operating system once it is committed (glibc only).

A 5,000-record page is a 13 MB reply body, then 12 MB of rows, then 16 MB of events, which
librdkafka copies. glibc's malloc serves large blocks with mmap (returned to the system when
freed) only above ``M_MMAP_THRESHOLD``, which starts at 128 KiB but is raised to the size of every
mmapped block freed (up to 32 MiB on 64-bit; mallopt(3), "M_MMAP_THRESHOLD"): after the first page
its bodies come from the heap, and what a page frees there stays resident, in pieces the next
page does not fit. Hence, once at start-up, a fixed threshold (which also turns that adjustment
off), and after each committed page ``malloc_trim(0)``, which hands the free pages of every arena
(librdkafka's threads have their own) back with madvise (malloc_trim(3); glibc >= 2.8 trims all
arenas, not only the top of the main heap).

Off glibc (musl, macOS) both are no-ops. An operator's own choice wins: with
``MALLOC_MMAP_THRESHOLD_`` or a ``glibc.malloc.mmap_threshold`` tunable in ``GLIBC_TUNABLES``
(tunables(7)) the threshold is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Final

log = logging.getLogger("publisher.malloc")

M_MMAP_THRESHOLD: Final = -3
"""mallopt's parameter number (malloc.h)."""
MMAP_THRESHOLD_BYTES: Final = 256 * 1024
"""Blocks this large or larger are mmapped: page bodies and librdkafka's message sets, never the
small objects a page is made of (a record's event is about 3 KB)."""
TRIM_MIN_RECORDS: Final = 500
"""Pages smaller than this grow no heap worth a trim, which costs about 5 ms of CPU in the daemon
(measured after each 5,000-record page: 1 us a record, within the publishing figure's noise); a
fleet of orgs polling small pages would pay it for nothing."""


def glibc_of(lib: Any) -> Any:
    """``lib`` when it is glibc (it has gnu_get_libc_version) with mallopt and malloc_trim,
    their C types declared; None otherwise (musl has neither knob)."""
    try:
        lib.gnu_get_libc_version  # noqa: B018 - the probe is the point
        mallopt, malloc_trim = lib.mallopt, lib.malloc_trim
    except AttributeError:
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    malloc_trim.argtypes, malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lib


def operator_chose_threshold(environ: Mapping[str, str] = os.environ) -> bool:
    """Did the operator set the threshold (environment variable or tunable)?"""
    tunables = environ.get("GLIBC_TUNABLES", "")
    return "MALLOC_MMAP_THRESHOLD_" in environ or "glibc.malloc.mmap_threshold" in tunables


class Allocator:
    """The process's malloc knobs, or none (every call a no-op returning False)."""

    def __init__(self, libc: Any) -> None:
        self._libc = libc

    @property
    def glibc(self) -> bool:
        return self._libc is not None

    def configure(
        self, threshold: int = MMAP_THRESHOLD_BYTES, environ: Mapping[str, str] = os.environ
    ) -> bool:
        """Set the mmap threshold (once, at start-up); True when it was set."""
        if self._libc is None or operator_chose_threshold(environ):
            return False
        done = bool(self._libc.mallopt(M_MMAP_THRESHOLD, threshold))
        if not done:  # mallopt answers 0 to a value out of range
            log.warning("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
        return done

    def trim(self) -> bool:
        """Give the free memory of every arena back to the system; True when some was."""
        if self._libc is None:
            return False
        return bool(self._libc.malloc_trim(0))


_lock = threading.Lock()
_process: Allocator | None = None


def allocator() -> Allocator:
    """This process's allocator: the C library it runs on when that is glibc (dlopen(NULL)
    searches the process's global symbols), else the no-op one."""
    global _process  # noqa: PLW0603 - looked up once per process
    with _lock:
        if _process is None:
            libc = None
            if sys.platform.startswith("linux"):
                try:
                    libc = glibc_of(ctypes.CDLL(None))
                except OSError:
                    libc = None
            _process = Allocator(libc)
        return _process


def configure(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    return allocator().configure(threshold)


def trim() -> bool:
    return allocator().trim()
