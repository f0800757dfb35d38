"""``python -m bench.run [--quick]``: the benchmarks of issue 7 against the local stack.

Sections (each can be skipped with --skip NAME):
- publish:  N records of simulator pages through the daemon's own publish_window (raw page
            bytes -> parse -> dedup -> event -> frame -> one transaction per page -> committed).
- msgspec:  the same with the msgspec path alone (the compiled reader of native/ switched off):
            what a user gets where the extension is not built.
- reference: the same with today's path, the reference parser (dict per record, event dict,
            jsonschema-rs validation, orjson): what the fast path must beat 2x.
- kafka:    the limit: the same events, encoded beforehand, produced and committed in the same
            transactions with no parsing at all.
- baseline: the naive way (pydantic model, JSONSerializer validating per record, one produce per
            record, one flush) on the first records of the same pages, to the same broker.
- competent: a competent user's way (pydantic with AliasChoices, JSONSerializer with validation
            off, batched produce, no transactions) on the first records of the same pages.
- restore:  1,000,000 live dedup marks written the way the daemon writes them, then read back by
            read_topic + apply_records in a fresh process (rate and RSS per mark).
- daemon:   `cdr-publisher run` against the simulator (limits off, 12 h of history) until
            caught up; its VmRSS.
- replay:   replay throughput, when publisher/replay.py exists.
- fleet:    one `cdr-publisher run --config` process with 200 simulated orgs beside one with
            1 org: RSS and CPU per org caught up (idle) and at Webex's full rate (bench/fleet.py).
- failover: replicas of one deployment; SIGKILL of one to its orgs publishing again from the
            other, median of several runs, at the default and a shorter session timeout
            (bench/failover.py).
--quick skips fleet and failover (about 12 minutes together) unless named with --with.
CPU figures are process CPU time (time.process_time: user + system of every thread of this
process, librdkafka's included). The broker and registry run in their own JVM processes, so
their CPU is not counted: records per CPU-second is the rate the publisher reaches on a core of
its own, whatever the JVMs take from the shared cores (wall-clock rates are printed beside it).
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
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.competent import run_competent
from bench.daemon_rss import run_daemon
from bench.failover import run_failover
from bench.figures import Timing, results, table
from bench.fleet import run_fleet
from bench.naive import run_naive
from bench.pages import generate_records, to_pages
from bench.replay import run_replay
from publisher.batch import Topics, build_batch
from publisher.daemon import Worker
from publisher.dedup import MarkTable, pack_marks
from publisher.events import EventEncoder, Source
from publisher.kafka.config import producer_config
from publisher.kafka.sink import OutRecord, TransactionalSink
from publisher.settings import Settings, load_settings
from publisher.stack import StackConfig
from publisher.state.codec import Cursor, cursor_key, dedup_key
from publisher.task import hour_of
from publisher.webex.page import parse_page_msgspec
from publisher.webex.ratelimit import RateLimiter
from publisher.webex.record import parse_page, parse_page_reference
from publisher.webex.windows import Endpoint, Window

SECTIONS = (
    "publish", "msgspec", "reference", "kafka", "baseline", "competent", "restore", "daemon",
    "replay", "fleet", "failover",
)  # fmt: skip
# The long sections --quick leaves out.
LONG_SECTIONS = frozenset({"fleet", "failover"})
ORG = "bench-org"
MARKS_PER_TRANSACTION = 5000


@dataclass(frozen=True, slots=True)
class Sizes:
    records: int
    baseline_records: int
    competent_records: int
    marks: int
    daemon_records: int
    daemon_timeout_s: float
    replay_records: int


FULL = Sizes(200_000, 10_000, 50_000, 1_000_000, 1_000_000, 1200.0, 100_000)
QUICK = Sizes(20_000, 3_000, 10_000, 1_000_000, 60_000, 150.0, 10_000)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (under 3 minutes)")
    parser.add_argument("--records", type=int, help="records for the publishing run")
    parser.add_argument("--baseline-records", type=int, help="records for the naive baseline")
    parser.add_argument("--competent-records", type=int, help="records for the competent baseline")
    parser.add_argument("--marks", type=int, help="live dedup marks for the restore run")
    parser.add_argument("--daemon-records", type=int, help="daemon run size")
    # Defaults: the local stack as `make bench` brought it up (CDR_STACK_* ports honoured).
    local = StackConfig.from_env()
    parser.add_argument("--bootstrap", default=local.bootstrap_servers)
    parser.add_argument("--registry", default=local.registry_url)
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--skip", action="append", choices=SECTIONS, default=[])
    parser.add_argument("--keep-topics", action="store_true", help="leave the bench topics behind")
    parser.add_argument(
        "--with",
        dest="with_",
        action="append",
        choices=sorted(LONG_SECTIONS),
        default=[],
        help="run this long section with --quick too",
    )
    parser.add_argument("--fleet-orgs", type=int, default=200, help="orgs in the fleet process")
    parser.add_argument(
        "--fleet-seconds", type=float, default=60.0, help="seconds each fleet phase is watched"
    )
    parser.add_argument("--failover-runs", type=int, default=5, help="SIGKILLs measured")
    parser.add_argument(
        "--failover-short-runs",
        type=int,
        default=3,
        help="SIGKILLs measured at the shorter session timeout (0: none)",
    )
    args = parser.parse_args(argv)
    if args.fleet_orgs < 2:
        parser.error("--fleet-orgs must be >= 2 (per-org figures subtract a 1-org process)")
    if args.fleet_seconds <= 0:
        parser.error("--fleet-seconds must be > 0")
    if args.failover_runs < 1 or args.failover_short_runs < 0:
        parser.error("--failover-runs must be >= 1 and --failover-short-runs >= 0")
    for name in ("records", "baseline_records", "competent_records", "marks", "daemon_records"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def sections_to_skip(args: argparse.Namespace) -> set[str]:
    """--skip, and with --quick the long sections not asked for with --with."""
    skip = set(args.skip)
    if args.quick:
        skip |= LONG_SECTIONS - set(args.with_)
    return skip


def _timed_cpu() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class _PageServer:
    """Stands in for CdrClient: hands the pre-built page bodies to LiveTask.publish_window, so the
    run measures the daemon's own code from raw bytes on, without HTTP."""

    base_url = "http://bench.invalid"

    def __init__(self, pages: list[bytes]) -> None:
        self._pages = pages
        self.limiter = RateLimiter(initial_per_minute=6000, page_per_minute=60000)

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Any]:  # noqa: ARG002 - CdrClient's signature
        for body in self._pages:
            yield _Page(body, window)


@dataclass(frozen=True, slots=True)
class _Page:
    body: bytes
    window: Window


def bench_settings(args: argparse.Namespace, prefix: str) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=args.bootstrap,
        schema_registry_url=args.registry,
        events_topic=f"{prefix}.events",
        state_topic=f"{prefix}.state",
        dlq_topic=f"{prefix}.dlq",
        org_id=ORG,
        # The catalogue of one org needs credentials; the publishing run never calls Webex.
        webex_token="bench-unused-token",  # noqa: S106 - never sent anywhere
        deployment_id=prefix,
        topic_partitions=3,
        topic_replication_factor=1,
        dedup_horizon_hours=12.0,
        # A 12 h horizon is legal only without the overlap (horizon >= 12 h + overlap).
        overlap_seconds=0.0,
        coordination="none",
    )


def bench_publish(
    settings: Settings,
    pages: list[bytes],
    records: int,
    *,
    reference: bool = False,
    msgspec_only: bool = False,
) -> Timing:
    worker = Worker(settings)
    # With coordination "none" start() opens every slot itself (a group would assign them later).
    worker.start()
    live = worker.live
    if live is None:
        raise RuntimeError("publish: the worker has no live task for the bench org")
    if reference:
        # Today's path: the reference parser makes Cdr objects, which build_batch turns into
        # event dicts, validates with jsonschema-rs and encodes with orjson.
        live.parse = lambda page: parse_page_reference(page.body)  # type: ignore[method-assign]
    if msgspec_only:
        live.parse = lambda page: parse_page_msgspec(page.body)  # type: ignore[method-assign]
    now = datetime.now(UTC)
    window = Window(now - timedelta(hours=3), now - timedelta(hours=1))
    try:
        wall0, cpu0 = _timed_cpu()
        live.publish_window(_PageServer(pages), window)  # type: ignore[arg-type]
        wall1, cpu1 = _timed_cpu()
    finally:
        # Worker.run closes the slots; here start() and publish_window are driven directly.
        for slot in worker.slots.values():
            slot.close()
    committed = worker.org.mark_count
    if committed != records:
        raise RuntimeError(f"publish: {committed} records committed, {records} expected")
    return Timing(records, wall1 - wall0, cpu1 - cpu0)


def bench_kafka_only(settings: Settings, pages: list[bytes], prefix: str) -> Timing:
    """Produce and commit the publisher's own events, encoded beforehand: the cost of Kafka."""
    now = datetime.now(UTC)
    source = Source("stream", _iso(now - timedelta(hours=3)), _iso(now - timedelta(hours=1)))
    encoder = EventEncoder(1)
    topics = Topics(events=f"{prefix}.limit", dlq=f"{prefix}.limit-dlq")
    create_topics(
        settings.kafka_bootstrap_servers,
        [NewTopic(topics.events, num_partitions=3, replication_factor=1)],
    )
    batches = [
        build_batch(
            parse_page(body),
            committed=MarkTable(),
            encoder=encoder,
            topics=topics,
            org_id=ORG,
            source=source,
        ).events
        for body in pages
    ]
    sink = TransactionalSink(producer_config(settings, f"{prefix}.limit"))
    sink.init()
    try:
        wall0, cpu0 = _timed_cpu()
        count = sum(sink.commit([], events) for events in batches)
        wall1, cpu1 = _timed_cpu()
    finally:
        sink.close()
    return Timing(count, wall1 - wall0, cpu1 - cpu0)


def bench_competent(
    args: argparse.Namespace, pages: list[bytes], prefix: str, limit: int
) -> Timing:
    topic = f"{prefix}.competent"
    create_topics(args.bootstrap, [NewTopic(topic, num_partitions=3, replication_factor=1)])
    now = datetime.now(UTC)
    source = {
        "endpoint": "stream",
        "window_start": _iso(now - timedelta(hours=3)),
        "window_end": _iso(now - timedelta(hours=1)),
    }
    wall0, cpu0 = _timed_cpu()
    sent = run_competent(
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
                    OutRecord(
                        topic,
                        dedup_key(settings.deployment_id, ORG, "live", hour, seq),
                        pack_marks(marks),
                    ),
                    OutRecord(topic, cursor_key(settings.deployment_id, ORG), cursor.encode()),
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
        [
            sys.executable,
            "-m",
            "bench.restore",
            args.bootstrap,
            topic,
            settings.deployment_id,
            ORG,
            str(oldest_hour),
        ],
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
        # The fleet's and failover's daemons joined groups cdr-publisher.<deployment>.
        groups = [
            g.group_id
            for g in admin.list_consumer_groups().result(timeout=30).valid
            if g.group_id.startswith(f"cdr-publisher.{prefix}.")
        ]
        left = 0
        for future in admin.delete_consumer_groups(groups).values() if groups else []:
            try:
                future.result(timeout=30)
            except KafkaException:
                left += 1
        if left:
            # A static member stays in its group for its session timeout after it stopped; the
            # broker drops the empty group later by itself.
            print(f"cleanup: {left} consumer groups left (static members)", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001
        print(f"cleanup: consumer groups: {exc}", file=sys.stderr)
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


def _measure_long(
    args: argparse.Namespace,
    prefix: str,
    step: Callable[[str], None],
    skip: set[str],
    out: dict[str, Any],
) -> None:
    """The fleet and failover sections, into ``out["fleet"]`` and ``out["notes"]``."""
    notes: list[str] = out["notes"]
    if args.quick and (left_out := sorted(LONG_SECTIONS - set(args.with_) - set(args.skip))):
        notes.append(f"{' and '.join(left_out)}: skipped by --quick (--with NAME runs it)")
    if "fleet" not in skip:
        step(f"fleet: one process with {args.fleet_orgs} simulated orgs and one with 1 org")
        fleet = run_fleet(
            orgs=args.fleet_orgs,
            seconds=args.fleet_seconds,
            bootstrap=args.bootstrap,
            registry_url=args.registry,
            prefix=prefix + ".f",
            work=Path(tempfile.mkdtemp(prefix="cdr-bench-fleet-")),
            step=step,
        )
        out["fleet"].update(fleet)
        notes.append(
            f"fleet: {args.fleet_orgs} orgs in one process beside a 1-org process, same run; "
            "idle = caught up, polling every 60 s; full rate = every org 10 h behind, "
            f"Webex's 1 + 10 requests a minute, {fleet['fleet_page_size']}-record pages; "
            "orgs per core = 60 s / (11 x CPU per request)"
        )
    if "failover" not in skip:
        failover = run_failover(
            runs=args.failover_runs,
            short_runs=args.failover_short_runs,
            bootstrap=args.bootstrap,
            registry_url=args.registry,
            prefix=prefix + ".fo",
            work=Path(tempfile.mkdtemp(prefix="cdr-bench-failover-")),
            step=step,
        )
        out["fleet"].update(failover)
        notes.append(
            "failover: 2 replicas, 12 orgs, polls every 2 s; SIGKILL to the last of its orgs' "
            f"first cursor committed by the other; runs {failover.get('failover_times_s')} s "
            f"at session timeout {failover.get('failover_session_timeout_s')} s, "
            f"{failover.get('failover_short_times_s')} s at "
            f"{failover.get('failover_short_session_timeout_s')} s"
        )


def _measure_paths(
    args: argparse.Namespace,
    pages: list[bytes],
    *,
    records: int,
    prefix: str,
    step: Callable[[str], None],
    skip: set[str],
    out: dict[str, Any],
) -> None:
    """The publishing path, the msgspec path alone, today's path and Kafka alone, each over the
    same pages."""
    settings = bench_settings(args, prefix)
    if "publish" not in skip:
        step(f"publishing {records:,} records ({len(pages)} pages, one transaction each)")
        out["publish"] = bench_publish(settings, pages, records)
    if "msgspec" not in skip:
        step(f"publishing the same {records:,} records with the msgspec path alone")
        out["msgspec"] = bench_publish(
            bench_settings(args, prefix + ".ms"), pages, records, msgspec_only=True
        )
    if "reference" not in skip:
        step(f"publishing the same {records:,} records with today's path (reference parser)")
        out["reference"] = bench_publish(
            bench_settings(args, prefix + ".ref"), pages, records, reference=True
        )
    if "kafka" not in skip:
        step(f"kafka only: producing and committing the same {records:,} events, pre-encoded")
        out["kafka_only"] = bench_kafka_only(settings, pages, prefix)


def measure(
    args: argparse.Namespace, sizes: Sizes, prefix: str, step: Callable[[str], None]
) -> dict[str, Any]:
    """Run the sections not skipped; the keyword arguments of figures.results()."""
    records = args.records or sizes.records
    baseline_records = min(args.baseline_records or sizes.baseline_records, records)
    marks = args.marks or sizes.marks
    daemon_records = args.daemon_records or sizes.daemon_records
    settings = bench_settings(args, prefix)
    competent_records = min(args.competent_records or sizes.competent_records, records)
    out: dict[str, Any] = dict.fromkeys(
        (
            "publish", "baseline", "restore", "restore_rss_delta_bytes", "restore_table_bytes",
            "competent", "kafka_only", "reference", "msgspec", "daemon_peak_rss_bytes",
        ),
    )  # fmt: skip
    out.update(daemon_rss_bytes=None, daemon_records=None, replay=None, notes=[], fleet={})
    notes, skip = out["notes"], sections_to_skip(args)
    pages: list[bytes] = []
    if {"publish", "msgspec", "reference", "kafka", "baseline", "competent"} - skip:
        step(f"generating {records:,} simulator records")
        pages = to_pages(generate_records(records))
    _measure_paths(args, pages, records=records, prefix=prefix, step=step, skip=skip, out=out)
    if "competent" not in skip:
        step(f"competent baseline on the first {competent_records:,} records")
        out["competent"] = bench_competent(args, pages, prefix, competent_records)
    if "baseline" not in skip:
        step(f"naive baseline on the first {baseline_records:,} records")
        out["baseline"] = bench_baseline(args, pages, prefix, baseline_records)
        notes.append(
            f"the baseline ran on the first {baseline_records:,} of the {records:,} records "
            "(it is slow); the ratio compares rates"
        )
    del pages
    if "restore" not in skip:
        step(f"writing {marks:,} dedup marks, then restoring them in a fresh process")
        restore, rss_delta, table_bytes = bench_restore(args, settings, prefix, marks)
        out.update(
            restore=restore, restore_rss_delta_bytes=rss_delta, restore_table_bytes=table_bytes
        )
        notes.append("bytes_per_mark: RSS delta of the restoring process (records list dropped)")
    if "daemon" not in skip:
        step(f"cdr-publisher run against the simulator, ~{daemon_records:,} records in 12 h")
        run = run_daemon(
            records=daemon_records,
            bootstrap=args.bootstrap,
            registry_url=args.registry,
            prefix=prefix + ".d",
            timeout_s=sizes.daemon_timeout_s if args.daemon_records is None else 1800.0,
            log_path=Path(tempfile.gettempdir()) / f"cdr-bench-daemon-{os.getpid()}.log",
        )
        out.update(
            daemon_rss_bytes=run.rss_bytes,
            daemon_records=run.records,
            daemon_peak_rss_bytes=run.peak_rss_bytes,
        )
        notes.append(
            f"daemon: {run.records:,} records in {run.seconds:.0f} s, {run.dedup_marks} marks, "
            f"peak RSS {(run.peak_rss_bytes or 0) / 1e6:.0f} MB"
        )
    if "replay" not in skip:
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
    _measure_long(args, prefix, step, skip, out)
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
