"""``python -m bench.run [--quick]``: the benchmarks of issue 7 against the local stack.

Sections (each can be skipped with --skip NAME):
- publish:  N records of simulator pages through the daemon's own publish_window (parse, dedup,
            event, validation, framing, one transaction per page) to committed.
- baseline: the naive way (pydantic model, JSONSerializer validating per record, one produce per
            record, one flush) on the first records of the same pages, to the same broker.
- restore:  1,000,000 live dedup marks written the way the daemon writes them, then read back by
            read_topic + apply_records in a fresh process (rate and RSS per mark).
- daemon:   `cdr-publisher run` against the simulator (limits off, 12 h of history) until
            caught up; its VmRSS.
- replay:   replay throughput, when publisher/replay.py exists.
Figures go to stdout as a table and to bench-results.json. Everything the run creates on the
broker (topics, schema subjects) is deleted at the end unless --keep-topics.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.daemon_rss import run_daemon
from bench.figures import Timing, results, table
from bench.naive import run_naive
from bench.pages import generate_records, to_pages
from bench.replay import run_replay
from publisher.daemon import Daemon, hour_of
from publisher.dedup import pack_marks
from publisher.kafka.config import producer_config
from publisher.kafka.sink import OutRecord, TransactionalSink
from publisher.kafka.state import Cursor, cursor_key, dedup_key
from publisher.settings import Settings, load_settings
from publisher.stack import StackConfig
from publisher.webex.windows import Endpoint, Window

SECTIONS = ("publish", "baseline", "restore", "daemon", "replay")
ORG = "bench-org"
MARKS_PER_TRANSACTION = 5000


@dataclass(frozen=True, slots=True)
class Sizes:
    records: int
    baseline_records: int
    marks: int
    daemon_records: int
    daemon_timeout_s: float
    replay_records: int


FULL = Sizes(200_000, 10_000, 1_000_000, 1_000_000, 1200.0, 100_000)
QUICK = Sizes(20_000, 3_000, 1_000_000, 60_000, 150.0, 10_000)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (under 3 minutes)")
    parser.add_argument("--records", type=int, help="records for the publishing run")
    parser.add_argument("--baseline-records", type=int, help="records for the naive baseline")
    parser.add_argument("--marks", type=int, help="live dedup marks for the restore run")
    parser.add_argument("--daemon-records", type=int, help="daemon run size")
    # Defaults: the local stack as `make bench` brought it up (CDR_STACK_* ports honoured).
    local = StackConfig.from_env()
    parser.add_argument("--bootstrap", default=local.bootstrap_servers)
    parser.add_argument("--registry", default=local.registry_url)
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--skip", action="append", choices=SECTIONS, default=[])
    parser.add_argument("--keep-topics", action="store_true", help="leave the bench topics behind")
    args = parser.parse_args(argv)
    for name in ("records", "baseline_records", "marks", "daemon_records"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def _timed_cpu() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class _PageServer:
    """Stands in for CdrClient: hands the pre-built page bodies to Daemon.publish_window, so the
    run measures the daemon's own code from raw bytes on, without HTTP."""

    base_url = "http://bench.invalid"

    def __init__(self, pages: list[bytes]) -> None:
        self._pages = pages

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Any]:  # noqa: ARG002 - CdrClient's signature
        for body in self._pages:
            yield _Page(body)


@dataclass(frozen=True, slots=True)
class _Page:
    body: bytes


def bench_settings(args: argparse.Namespace, prefix: str) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=args.bootstrap,
        schema_registry_url=args.registry,
        events_topic=f"{prefix}.events",
        state_topic=f"{prefix}.state",
        dlq_topic=f"{prefix}.dlq",
        org_id=ORG,
        deployment_id=prefix,
        topic_partitions=3,
        topic_replication_factor=1,
        dedup_horizon_hours=12.0,
    )


def bench_publish(settings: Settings, pages: list[bytes], records: int) -> Timing:
    daemon = Daemon(settings)
    daemon.start()
    now = datetime.now(UTC)
    window = Window(now - timedelta(hours=3), now - timedelta(hours=1))
    try:
        wall0, cpu0 = _timed_cpu()
        daemon.publish_window(_PageServer(pages), window)  # type: ignore[arg-type]
        wall1, cpu1 = _timed_cpu()
    finally:
        # Daemon.run closes the sink; here start() and publish_window are driven directly.
        if daemon._sink is not None:
            daemon._sink.close()
    committed = len(daemon.state.marks)
    if committed != records:
        raise RuntimeError(f"publish: {committed} records committed, {records} expected")
    return Timing(records, wall1 - wall0, cpu1 - cpu0)


def bench_baseline(args: argparse.Namespace, pages: list[bytes], prefix: str, limit: int) -> Timing:
    topic = f"{prefix}.naive"
    create_topics(args.bootstrap, [NewTopic(topic, num_partitions=3, replication_factor=1)])
    now = datetime.now(UTC)
    source = {
        "endpoint": "stream",
        "window_start": _iso(now - timedelta(hours=3)),
        "window_end": _iso(now - timedelta(hours=1)),
    }
    wall0, cpu0 = _timed_cpu()
    sent = run_naive(
        pages,
        limit=limit,
        producer_config={"bootstrap.servers": args.bootstrap},
        registry_url=args.registry,
        topic=topic,
        org_id=ORG,
        source=source,
    )
    wall1, cpu1 = _timed_cpu()
    return Timing(sent, wall1 - wall0, cpu1 - cpu0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def write_marks(settings: Settings, topic: str, count: int) -> int:
    """``count`` random live marks, spread over the last 12 hours, the way the daemon writes
    them: one dedup key of packed marks plus the cursor record per transaction."""
    sink = TransactionalSink(producer_config(settings, f"{settings.deployment_id}.marks"))
    sink.init()
    now = datetime.now(UTC)
    hour_now = hour_of(now)
    transactions = -(-count // MARKS_PER_TRANSACTION)
    try:
        written = 0
        for seq in range(1, transactions + 1):
            n = min(MARKS_PER_TRANSACTION, count - written)
            marks = array("Q", os.urandom(8 * n))
            hour = hour_now - (seq - 1) * 12 // transactions
            cursor = Cursor(position=now, region_base_url=None, seq=seq, committed_at=now)
            sink.commit(
                [
                    OutRecord(topic, dedup_key(ORG, "live", hour, seq), pack_marks(marks)),
                    OutRecord(topic, cursor_key(ORG, "live"), cursor.encode()),
                ]
            )
            written += n
    finally:
        sink.close()
    return hour_now - 12


def bench_restore(
    args: argparse.Namespace, settings: Settings, prefix: str, marks: int
) -> tuple[Timing, int, int]:
    topic = f"{prefix}.restore"
    create_topics(
        args.bootstrap,
        [
            NewTopic(
                topic, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"}
            )
        ],
    )
    oldest_hour = write_marks(settings, topic, marks)
    child = subprocess.run(
        [sys.executable, "-m", "bench.restore", args.bootstrap, topic, ORG, str(oldest_hour)],
        capture_output=True,
        check=True,
        timeout=600,
    )
    out = orjson.loads(child.stdout.splitlines()[-1])
    if out["marks"] != marks:
        raise RuntimeError(f"restore: {out['marks']} marks restored, {marks} written")
    timing = Timing(out["marks"], out["wall_s"], out["cpu_s"])
    print(
        f"restore: read_topic {out['read_s']:.2f} s, apply_records {out['apply_s']:.2f} s",
        file=sys.stderr,
    )
    return timing, out["rss_after"] - out["rss_before"], out["table_bytes"]


def create_topics(bootstrap: str, topics: list[NewTopic]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)


def cleanup(args: argparse.Namespace, prefix: str) -> None:
    """Delete the run's topics and schema subjects; best effort (the run's figures stand)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    try:
        names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix + ".")]
        for future in admin.delete_topics(names).values() if names else []:
            future.result(timeout=30)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the figures
        print(f"cleanup: topics: {exc}", file=sys.stderr)
    try:
        with SchemaRegistryClient({"url": args.registry, "timeout": 30}) as registry:
            for subject in registry.get_subjects():
                if subject.startswith(prefix + "."):
                    registry.delete_subject(subject)
                    registry.delete_subject(subject, permanent=True)
    except Exception as exc:  # noqa: BLE001
        print(f"cleanup: schema subjects: {exc}", file=sys.stderr)


def _stepper(started: float) -> Callable[[str], None]:
    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    return step


def measure(
    args: argparse.Namespace, sizes: Sizes, prefix: str, step: Callable[[str], None]
) -> dict[str, Any]:
    """Run the sections not skipped; the keyword arguments of figures.results()."""
    records = args.records or sizes.records
    baseline_records = min(args.baseline_records or sizes.baseline_records, records)
    marks = args.marks or sizes.marks
    daemon_records = args.daemon_records or sizes.daemon_records
    settings = bench_settings(args, prefix)
    out: dict[str, Any] = dict.fromkeys(
        ("publish", "baseline", "restore", "restore_rss_delta_bytes", "restore_table_bytes"),
    )
    out.update(daemon_rss_bytes=None, daemon_records=None, replay=None, notes=[])
    notes: list[str] = out["notes"]
    pages: list[bytes] = []
    if "publish" not in args.skip or "baseline" not in args.skip:
        step(f"generating {records:,} simulator records")
        pages = to_pages(generate_records(records))
    if "publish" not in args.skip:
        step(f"publishing {records:,} records ({len(pages)} pages, one transaction each)")
        out["publish"] = bench_publish(settings, pages, records)
    if "baseline" not in args.skip:
        step(f"naive baseline on the first {baseline_records:,} records")
        out["baseline"] = bench_baseline(args, pages, prefix, baseline_records)
        notes.append(
            f"the baseline ran on the first {baseline_records:,} of the {records:,} records "
            "(it is slow); the ratio compares rates"
        )
    del pages
    if "restore" not in args.skip:
        step(f"writing {marks:,} dedup marks, then restoring them in a fresh process")
        restore, rss_delta, table_bytes = bench_restore(args, settings, prefix, marks)
        out.update(
            restore=restore, restore_rss_delta_bytes=rss_delta, restore_table_bytes=table_bytes
        )
        notes.append("bytes_per_mark: RSS delta of the restoring process (records list dropped)")
    if "daemon" not in args.skip:
        step(f"cdr-publisher run against the simulator, ~{daemon_records:,} records in 12 h")
        run = run_daemon(
            records=daemon_records,
            bootstrap=args.bootstrap,
            registry_url=args.registry,
            prefix=prefix + ".d",
            timeout_s=sizes.daemon_timeout_s if args.daemon_records is None else 1800.0,
            log_path=Path(tempfile.gettempdir()) / f"cdr-bench-daemon-{os.getpid()}.log",
        )
        out.update(daemon_rss_bytes=run.rss_bytes, daemon_records=run.records)
        notes.append(
            f"daemon: {run.records:,} records in {run.seconds:.0f} s, {run.dedup_marks} marks, "
            f"peak RSS {(run.peak_rss_bytes or 0) / 1e6:.0f} MB"
        )
    if "replay" not in args.skip:
        if importlib.util.find_spec("publisher.replay") is None:
            notes.append("replay: publisher/replay.py does not exist yet; not measured")
        else:
            step(f"republish replay of one hour of cdr_feed, ~{sizes.replay_records:,} records")
            replay = run_replay(bench_settings(args, prefix + ".r"), sizes.replay_records)
            out["replay"] = replay
            notes.append(
                f"replay: {replay.items:,} records; its CPU time includes the in-process "
                "simulator serving them"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    prefix = f"bench.{int(time.time())}.{os.getpid()}"
    started = time.monotonic()
    step = _stepper(started)
    try:
        measured = measure(args, sizes, prefix, step)
    finally:
        if not args.keep_topics:
            step("deleting the run's topics and schema subjects")
            cleanup(args, prefix)
    doc = results(quick=args.quick, **measured)
    doc["seconds"] = round(time.monotonic() - started, 1)
    args.out.write_text(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(table(doc))
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
