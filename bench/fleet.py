"""Scale of one process (issue 11): one ``cdr-publisher run --config catalogue.toml`` serving N
simulated orgs (200 by default), watched through /proc next to a process of 1 org in the same
run, so that RSS per org is the difference of the two over N - 1.

Idle: the orgs caught up and polling once a minute (the default poll interval) under Webex's
real limits. Getting there at 1 initial request a minute would take 7 minutes (the first poll
starts 12 h back, in 2 h windows), so both processes first catch up against the simulator with
its limits off and theirs raised, are stopped, and start again with the real limits on both
sides (the cursors carry on); then both are sampled side by side.

Full rate: a second simulator whose orgs hold enough history (13 h, dense) that every window
has more pages than a minute's budget, real limits on both sides (1 initial + 10 pages a
minute per token, the simulator refusing more), pages of 500 records (the smallest `max` the
API takes, so the least data per request). Each org's cursor is set 10 h back before the
processes start (as if the deployment had been stopped for 10 h), so every org pulls at its
full rate for as long as it runs; requests are counted by the simulator per token. (A fresh
deployment would start at the stream's 12 h edge, and the minute its limiter waits before the
first request ages that edge past the retention: every org would open a 1 s gap and fill it
from cdr_feed, which is not what this measures.)
The simulator runs in this process and the broker in its own, on the same two cores: when they
cannot keep up, the orgs make fewer requests than their budget, and the figure that does not
depend on it is the process's CPU per request, from which orgs per core at the full rate is
derived.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.daemons import (
    Deployment,
    free_port,
    get,
    latest_cursors,
    sample,
    stop,
    write_catalogue,
)
from bench.figures import ProcSample, Span, fleet_figures, metric_sum
from publisher.kafka.partitioning import slot_of
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import Cursor, cursor_key

PAGE_SIZE = 500
STATE_PARTITIONS = 12
BEHIND = timedelta(hours=10)
SAMPLE_EVERY_S = 2.0
# Relaxed limits for the catch-up before the idle phase only (the tests' values).
CATCH_UP_LIMITS = {
    "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": "600",
    "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": "6000",
    "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": "5",
}
# Webex's limits, also the settings' defaults: spelled out so that the run does not depend on them.
REAL_LIMITS = {
    "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": "1",
    "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": "10",
    "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": "60",
}


@dataclass
class _Proc:
    name: str
    deployment: Deployment
    org_ids: list[str]
    work: Path
    port: int = 0
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self, phase: str, **env: str) -> None:
        self.port = free_port()
        self.log = self.work / f"{self.name}.{phase}.log"
        self.proc = self.deployment.start(self.log, CDR_PUBLISHER_HTTP_PORT=str(self.port), **env)

    def alive(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            tail = self.log.read_text(errors="replace")[-3000:] if self.log else ""
            raise RuntimeError(f"fleet: {self.name} exited ({code}); log {self.log}:\n{tail}")
        return self.proc

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGTERM, timeout=60)


def _watch(procs: list[_Proc], seconds: float) -> list[Span]:
    """Sample every process every SAMPLE_EVERY_S for ``seconds``; one Span each."""
    samples: list[list[ProcSample]] = [[sample(p.alive().pid)] for p in procs]
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(SAMPLE_EVERY_S, left))
        for proc, seen in zip(procs, samples, strict=True):
            seen.append(sample(proc.alive().pid))
    return [Span.of(seen) for seen in samples]


def _wait_cursors(
    procs: list[_Proc], *, since: float, near_now: bool, timeout: float, step: Callable[[str], None]
) -> None:
    """Until every org of every process has a cursor committed after ``since`` (epoch s), and
    with ``near_now`` one within 5 minutes of now (caught up)."""
    deadline = time.monotonic() + timeout
    while True:
        behind = 0
        target = (datetime.now(UTC) - timedelta(minutes=5)).timestamp()
        for proc in procs:
            proc.alive()
            dep = proc.deployment
            cursors = latest_cursors(dep.bootstrap, dep.state_topic, dep.prefix, proc.org_ids)
            behind += sum(
                1
                for org in proc.org_ids
                if org not in cursors
                or cursors[org].committed_at.timestamp() < since
                or (near_now and cursors[org].position.timestamp() < target)
            )
        if not behind:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"fleet: {behind} orgs not there after {timeout:.0f} s")
        step(f"  {behind} orgs to go")
        time.sleep(10.0)


def _forge_cursors(proc: _Proc, position: datetime) -> None:
    """Create the deployment's state topic as the daemon would and commit each org's cursor at
    ``position`` in its slot's partition (tests/integration/test_hardening.py moves a cursor
    back the same way)."""
    dep = proc.deployment
    admin = AdminClient({"bootstrap.servers": dep.bootstrap})
    topic = NewTopic(
        dep.state_topic,
        num_partitions=STATE_PARTITIONS,
        replication_factor=1,
        config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"},
    )
    for future in admin.create_topics([topic]).values():
        future.result(timeout=30)
    producer = Producer(
        {"bootstrap.servers": dep.bootstrap, "transactional.id": f"bench-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for org in proc.org_ids:
        cursor = Cursor(position=position, region_base_url=None, seq=1, committed_at=position)
        producer.produce(
            dep.state_topic,
            key=cursor_key(dep.prefix, org),
            value=cursor.encode(),
            partition=slot_of(org, STATE_PARTITIONS),
        )
    producer.commit_transaction(30)


def _requests(sim: Simulator, org_numbers: set[int]) -> int:
    return sum(
        int(s["initial"]) + int(s["page"]) for s in sim.token_stats() if s["org"] in org_numbers
    )


def _processes(
    sim: Simulator, orgs: int, *, bootstrap: str, registry_url: str, prefix: str, work: Path
) -> tuple[_Proc, _Proc]:
    """The N-org process (orgs 1..N) and the 1-org process (org N+1, a token of its own)."""
    infos = sim.orgs_info()
    out = []
    for name, chosen in (("many", infos[:orgs]), ("one", infos[orgs : orgs + 1])):
        catalogue = write_catalogue(chosen, work / f"{name}-orgs", name)
        deployment = Deployment(
            bootstrap,
            registry_url,
            sim.base_url,
            prefix=f"{prefix}.{name}",
            catalogue=catalogue,
            extra={"CDR_PUBLISHER_WEBEX_PAGE_SIZE": str(PAGE_SIZE)},
        )
        org_ids = [info["org_id"] for info in chosen]
        out.append(_Proc(name, deployment, org_ids, work))
    return out[0], out[1]


def run_fleet(
    *,
    orgs: int,
    seconds: float,
    bootstrap: str,
    registry_url: str,
    prefix: str,
    work: Path,
    step: Callable[[str], None],
) -> dict[str, Any]:
    """Both phases; the fleet keys of bench/figures.py."""
    work.mkdir(parents=True, exist_ok=True)
    idle, idle_one = _idle_phase(
        orgs, seconds, bootstrap, registry_url, prefix + ".idle", work, step
    )
    full = _full_phase(orgs, seconds, bootstrap, registry_url, prefix + ".full", work, step)
    return fleet_figures(orgs=orgs, page_size=PAGE_SIZE, idle=idle, idle_baseline=idle_one, **full)


def _idle_phase(  # noqa: PLR0917 - the section's arguments
    orgs: int,
    seconds: float,
    bootstrap: str,
    registry_url: str,
    prefix: str,
    work: Path,
    step: Callable[[str], None],
) -> tuple[Span, Span]:
    # A small org's traffic: about one record a minute; an hour of history.
    config = SimulatorConfig(
        seed=71, orgs=orgs + 1, calls_per_minute=0.5, history_hours=1.0, rate_limits=False
    )
    with Simulator(config) as sim:
        many, one = _processes(
            sim, orgs, bootstrap=bootstrap, registry_url=registry_url, prefix=prefix, work=work
        )
        procs = [many, one]
        try:
            step(f"fleet idle: {orgs} orgs + 1 catching up, limits off")
            for proc in procs:
                proc.start("catch-up", **CATCH_UP_LIMITS)
            _wait_cursors(procs, since=0, near_now=True, timeout=900, step=step)
            for proc in procs:
                proc.stop()
            # Webex's limits from here on, on both sides.
            sim.config = dataclasses.replace(sim.config, rate_limits=True)
            restarted = time.time()
            step("fleet idle: restarted with Webex's limits; waiting for every org's next poll")
            for proc in procs:
                proc.start("idle", **REAL_LIMITS)
            _wait_cursors(procs, since=restarted, near_now=True, timeout=600, step=step)
            step(f"fleet idle: watching both processes for {seconds:.0f} s")
            spans = _watch(procs, seconds)
        finally:
            for proc in procs:
                proc.stop()
    return spans[0], spans[1]


def _full_phase(  # noqa: PLR0917 - the section's arguments
    orgs: int,
    seconds: float,
    bootstrap: str,
    registry_url: str,
    prefix: str,
    work: Path,
    step: Callable[[str], None],
) -> dict[str, Any]:
    # 40 calls a minute (about 63 records) puts about 7,600 records, 15 pages of 500, in every
    # 2 h window: more than the 11 requests a minute allow, so an org never runs out of pages.
    config = SimulatorConfig(seed=72, orgs=orgs + 1, calls_per_minute=40.0, history_hours=13.0)
    with Simulator(config) as sim:
        many, one = _processes(
            sim, orgs, bootstrap=bootstrap, registry_url=registry_url, prefix=prefix, work=work
        )
        procs = [many, one]
        numbers = set(range(1, orgs + 1))
        try:
            step(f"fleet full rate: {orgs} orgs + 1, 10 h behind, Webex's limits")
            for proc in procs:
                _forge_cursors(proc, datetime.now(UTC) - BEHIND)
                proc.start("full", **REAL_LIMITS)
            # Warm up: every org started (its first request seen), then one more budget minute
            # (its burst of 10 pages spent), so the window sees the steady rate.
            deadline = time.monotonic() + 300
            while len({s["org"] for s in sim.token_stats()}) < orgs + 1:
                for proc in procs:
                    proc.alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("fleet full rate: not every org made a request in 300 s")
                time.sleep(2.0)
            time.sleep(60.0)
            url = f"http://127.0.0.1:{many.port}/metrics"
            fetched0 = metric_sum(get(url), "cdr_publisher_records_fetched_total")
            requests0 = _requests(sim, numbers)
            step(f"fleet full rate: watching both processes for {seconds:.0f} s")
            spans = _watch(procs, seconds)
            requests = _requests(sim, numbers) - requests0
            fetched = metric_sum(get(url), "cdr_publisher_records_fetched_total") - fetched0
            stats = [s for s in sim.token_stats() if s["org"] in numbers]
        finally:
            for proc in procs:
                proc.stop()
    step(
        f"fleet full rate: {requests} requests by the {orgs} orgs in {spans[0].seconds:.0f} s; "
        f"most in any 60 s by one token: {max(s['max_initial_60s'] for s in stats)} initial, "
        f"{max(s['max_page_60s'] for s in stats)} page; refused for rate: "
        f"{sum(int(s['refused_for_rate']) for s in stats)}"
    )
    return {
        "full": spans[0],
        "full_baseline": spans[1],
        "full_requests": requests,
        "full_records": fetched,
    }
