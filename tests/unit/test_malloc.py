"""publisher.malloc: on glibc, page-sized blocks go back to the system when freed and a trim
returns what small ones leave free in the middle of the heap; elsewhere every call is a no-op.

The effects are measured in fresh processes (their own heap, the knob not yet turned), by the
resident size the kernel reports before and after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest

from publisher import malloc

GLIBC = malloc.allocator().glibc
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the C library is not glibc")

_RSS = """
def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
"""


def _measure(body: str) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter; it prints a JSON object, returned here."""
    script = "import json, sys\nfrom publisher import malloc\n" + _RSS + textwrap.dedent(body)
    # Without an operator's own malloc settings, which configure() would leave alone.
    env = {
        k: v for k, v in os.environ.items() if k not in {"MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"}
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    return dict(json.loads(done.stdout))


# Page-sized blocks (1 MiB), each followed by a small one (4 KiB) that stays: freed, the large
# ones sit below live memory, where the heap cannot shrink past them.
_PINNED_LARGE = """
configured = malloc.configure() if CONFIGURE else False
mib = 1 << 20  # (sizes in variables: the compiler folds constant products into one object)
warm = b"x" * (2 * mib)
del warm  # glibc would raise its mmap threshold to this size here, unless configured
large, pins = [], []
for _ in range(64):
    large.append(b"x" * mib)
    pins.append(b"x" * (mib // 256))
before = rss()
del large
print(json.dumps({"configured": configured, "freed": before - rss()}))
"""


@needs_glibc
def test_with_the_threshold_set_a_freed_page_sized_block_leaves_the_process() -> None:
    freed = 64 << 20
    configured = _measure(_PINNED_LARGE.replace("CONFIGURE", "True"))
    assert configured["configured"] is True
    assert configured["freed"] > 0.9 * freed
    # The control: glibc's own adjusting threshold keeps them (what the daemon saw).
    left_alone = _measure(_PINNED_LARGE.replace("CONFIGURE", "False"))
    assert left_alone["freed"] < 0.1 * freed


@needs_glibc
def test_a_trim_returns_what_small_blocks_leave_free_below_live_memory() -> None:
    """3 KB blocks (an event's size) freed below a live one: resident until malloc_trim(0)."""
    out = _measure(
        """
        malloc.configure()
        size = 3000  # a variable: the compiler would fold a constant product into one object
        events = [b"x" * size for _ in range(20000)]  # 60 MB, malloc'd (over pymalloc's 512)
        pin = b"x" * size
        peak = rss()
        del events
        before = rss()
        trimmed = malloc.trim()
        print(json.dumps({"by_free": peak - before, "trimmed": trimmed, "by_trim": before - rss()}))
        """
    )
    assert out["by_free"] < 10 << 20  # free() alone gives (next to) nothing back
    assert out["trimmed"] is True
    assert out["by_trim"] > 40 << 20


def test_without_glibc_every_call_is_a_no_op() -> None:
    musl_like = SimpleNamespace(malloc=lambda _size: 0)  # no gnu_get_libc_version, no knobs
    assert malloc.glibc_of(musl_like) is None
    allocator = malloc.Allocator(malloc.glibc_of(musl_like))
    assert not allocator.glibc
    assert allocator.configure() is False
    assert allocator.trim() is False


def test_a_glibc_without_malloc_trim_is_not_used() -> None:
    def mallopt(_param: int, _value: int) -> int:
        return 1

    old = SimpleNamespace(gnu_get_libc_version=lambda: b"2.0", mallopt=mallopt)
    assert malloc.glibc_of(old) is None


class _RecordingLibc:
    """A glibc stand-in that records what it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.gnu_get_libc_version = self._record("gnu_get_libc_version")
        self.mallopt = self._record("mallopt")
        self.malloc_trim = self._record("malloc_trim")

    def _record(self, name: str) -> Any:
        def call(*args: int) -> int:
            self.calls.append((name, args))
            return 1

        return call


def test_the_threshold_is_set_to_page_sized_blocks_unless_the_operator_chose_one() -> None:
    libc = _RecordingLibc()
    allocator = malloc.Allocator(malloc.glibc_of(libc))
    assert allocator.configure(environ={}) is True
    assert libc.calls == [("mallopt", (malloc.M_MMAP_THRESHOLD, malloc.MMAP_THRESHOLD_BYTES))]
    assert allocator.trim() is True
    assert libc.calls[-1] == ("malloc_trim", (0,))
    libc.calls.clear()
    for environ in (
        {"MALLOC_MMAP_THRESHOLD_": "1048576"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"},
    ):
        assert allocator.configure(environ=environ) is False
    assert libc.calls == []
