"""State restore, measured in a process of its own so that its resident-memory delta is the
restored state's alone: ``python -m bench.restore BOOTSTRAP TOPIC ORG OLDEST_HOUR``.

Prints one JSON line: marks, seconds (read_topic + apply_records, wall and CPU), the RSS before
and after (records list dropped, freed memory returned to the OS), and the table's own bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import sys
import time
from pathlib import Path

import orjson

from bench.figures import vmrss_bytes
from publisher.kafka.state import read_state
from publisher.state.codec import fold
from publisher.state.memory import OrgState


def rss() -> int:
    return vmrss_bytes(Path("/proc/self/status").read_text()) or 0


def _trim() -> None:
    """Hand freed heap back to the OS so that RSS shows what is still held (glibc only)."""
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def main(argv: list[str]) -> int:
    bootstrap, topic, deployment, org = argv[0], argv[1], argv[2], argv[3]
    oldest_hour = int(argv[4])
    config = {
        "bootstrap.servers": bootstrap,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    }
    gc.collect()
    _trim()
    before = rss()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    records = read_state(config, topic)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    state = OrgState(deployment, org)
    state.load(fold(records, deployment=deployment, orgs=[org])[org], oldest_hour=oldest_hour)
    wall2, cpu2 = time.perf_counter(), time.process_time()
    count = len(records)
    del records
    gc.collect()
    _trim()
    after = rss()
    print(
        orjson.dumps(
            {
                "marks": state.mark_count,
                "records": count,
                "read_s": wall1 - wall0,
                "apply_s": wall2 - wall1,
                "wall_s": wall2 - wall0,
                "cpu_s": (cpu1 - cpu0) + (cpu2 - cpu1),
                "rss_before": before,
                "rss_after": after,
                "table_bytes": state.table("live").memory_bytes(),
            }
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
