"""Failover (issue 12): replicas of one deployment (coordination=group, static members) share 12
orgs with live data arriving; the replica owning more of them is SIGKILLed and the time is
measured from the kill until every org it owned has a cursor committed by the survivor (the
first cursor record in the state topic whose ``committed_at`` is after the kill). The killed
replica is then started again under its name, the group settles, and the next run kills again.

A crashed static member is evicted only when its session timeout runs out (it sends no
LeaveGroup), so the figure is that timeout plus the rebalance, the fencing
``init_transactions()`` and the restore of the moved slots, plus the wait for the next poll.
Polls every 2 s with the tests' limits (30 + 300 a minute) so the figure is the hand-over's:
with Webex's 1 initial request a minute an org may also wait for what is left of its token's
minute (the cursor carries the token's last requests across the move).
"""

from __future__ import annotations

import json
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.daemons import Deployment, cursor_history, latest_cursors, stop, write_catalogue
from bench.figures import failover_figures
from publisher.kafka.partitioning import slot_of
from publisher.settings import Settings
from publisher.simulator.server import Simulator, SimulatorConfig

ORGS = 12
SLOTS = 12
INITIAL_PER_MINUTE = 30
PAGES_PER_MINUTE = 300
DEFAULT_SESSION_S = float(Settings.model_fields["group_session_timeout_seconds"].default)
SHORT_SESSION_S = 6.0


@dataclass
class _Replica:
    name: str
    deployment: Deployment
    work: Path
    run: int = 0
    log: Path = field(init=False)
    proc: Any = None

    def start(self) -> None:
        self.run += 1
        self.log = self.work / f"{self.name}.{self.run}.log"
        self.proc = self.deployment.start(self.log, CDR_PUBLISHER_GROUP_INSTANCE_ID=self.name)

    def alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"failover: replica {self.name} exited; {self.log}:\n{tail}")

    def owned(self) -> set[int]:
        """The slots its current log says it holds: assignments minus revocations, in order."""
        owned: set[int] = set()
        for line in self.log.read_text(errors="replace").splitlines():
            if '"msg":"slots' not in line:
                continue
            record = json.loads(line)
            if record["msg"] == "slots assigned":
                owned.update(record["slots"])
            elif record["msg"] in {"slots revoked", "slots lost"}:
                owned.difference_update(record["slots"])
        return owned


def _settled(
    replicas: list[_Replica], dep: Deployment, org_ids: list[str], timeout: float
) -> dict[str, set[int]]:
    """Until the replicas hold every slot between them, once each, each replica some, and every
    org has a cursor committed after that: the group has settled and every org publishes."""
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    while time.monotonic() < deadline:
        for replica in replicas:
            replica.alive()
        owned = {r.name: r.owned() for r in replicas}
        total = sum(len(s) for s in owned.values())
        # Every replica holds some slots: a replica that joined last has had its share.
        spread = all(owned.values())
        if not spread or total != SLOTS or set().union(*owned.values()) != set(range(SLOTS)):
            settled_at = None
            time.sleep(1.0)
            continue
        if settled_at is None:
            settled_at = time.time()
        cursors = latest_cursors(dep.bootstrap, dep.state_topic, dep.prefix, org_ids)
        if all(
            org in cursors and cursors[org].committed_at.timestamp() > settled_at for org in org_ids
        ):
            return owned
        time.sleep(1.0)
    raise RuntimeError(f"failover: the group did not settle in {timeout:.0f} s")


def _time_to_publish(
    dep: Deployment, orgs: list[str], killed_at: float, survivor: _Replica, timeout: float
) -> float:
    """Seconds from ``killed_at`` to the last of ``orgs``' first cursor committed after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        survivor.alive()
        history = cursor_history(dep.bootstrap, dep.state_topic, dep.prefix, orgs)
        firsts = []
        for org in orgs:
            after = [c.committed_at.timestamp() for c in history[org]]
            after = [t for t in after if t > killed_at]
            if after:
                firsts.append(min(after))
        if len(firsts) == len(orgs):
            return max(firsts) - killed_at
        time.sleep(0.5)
    raise RuntimeError(f"failover: the killed replica's orgs did not publish in {timeout:.0f} s")


def _series(  # noqa: PLR0917 - one series' arguments
    sim: Simulator,
    catalogue: Path,
    session_s: float,
    runs: int,
    bootstrap: str,
    registry_url: str,
    prefix: str,
    work: Path,
    step: Callable[[str], None],
) -> list[float]:
    dep = Deployment(
        bootstrap,
        registry_url,
        sim.base_url,
        prefix=prefix,
        catalogue=catalogue,
        extra={
            "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": str(INITIAL_PER_MINUTE),
            "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": str(PAGES_PER_MINUTE),
            "CDR_PUBLISHER_GROUP_SESSION_TIMEOUT_SECONDS": f"{session_s:g}",
            "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": "2",
            "CDR_PUBLISHER_STATE_PARTITIONS": str(SLOTS),
        },
    )
    org_ids = sim.org_ids
    slot = {org: slot_of(org, SLOTS) for org in org_ids}
    work.mkdir(parents=True, exist_ok=True)
    replicas = [_Replica(name, dep, work) for name in ("r1", "r2")]
    times: list[float] = []
    try:
        for replica in replicas:
            replica.start()
        owned = _settled(replicas, dep, org_ids, timeout=300)
        for run in range(1, runs + 1):
            victim = max(replicas, key=lambda r: sum(slot[o] in owned[r.name] for o in org_ids))
            survivor = next(r for r in replicas if r is not victim)
            orgs = [o for o in org_ids if slot[o] in owned[victim.name]]
            killed_at = time.time()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            seconds = _time_to_publish(dep, orgs, killed_at, survivor, timeout=180)
            times.append(seconds)
            step(
                f"failover (session {session_s:g} s) run {run}/{runs}: {victim.name} killed "
                f"with {len(orgs)} orgs; all publishing again from {survivor.name} after "
                f"{seconds:.1f} s"
            )
            if run < runs:
                victim.start()
                owned = _settled(replicas, dep, org_ids, timeout=300)
    finally:
        for replica in replicas:
            if replica.proc is not None:
                stop(replica.proc, signal.SIGTERM, timeout=60)
    return times


def run_failover(
    *,
    runs: int,
    short_runs: int,
    bootstrap: str,
    registry_url: str,
    prefix: str,
    work: Path,
    step: Callable[[str], None],
) -> dict[str, Any]:
    """The default session timeout's series, then the shorter one's; the failover keys."""
    config = SimulatorConfig(
        seed=81,
        orgs=ORGS,
        calls_per_minute=2.0,
        history_hours=1.0,
        initial_per_minute=INITIAL_PER_MINUTE,
        pages_per_minute=PAGES_PER_MINUTE,
    )
    out: dict[str, Any] = {}
    with Simulator(config) as sim:
        catalogue = write_catalogue(sim.orgs_info(), work / "orgs", "orgs")
        for short, session_s, count in (
            (False, DEFAULT_SESSION_S, runs),
            (True, SHORT_SESSION_S, short_runs),
        ):
            if count <= 0:
                continue
            step(
                f"failover: 2 replicas, {ORGS} orgs, session timeout {session_s:g} s, {count} runs"
            )
            name = "short" if short else "default"
            times = _series(
                sim,
                catalogue,
                session_s,
                count,
                bootstrap,
                registry_url,
                f"{prefix}.{name}",
                work / name,
                step,
            )
            out.update(failover_figures(times, session_s, short=short))
            if times:
                step(f"failover: median {statistics.median(times):.1f} s of {times}")
    return out
