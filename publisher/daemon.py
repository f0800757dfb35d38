"""The daemon: a worker that opens the slots it owns, runs their orgs' tasks, and stops them.

Start-up, in this order (see ARCHITECTURE.md "Tasks, slots and replicas"):

1. Create or check the topics; register (or find) the event schema.
2. Group the catalogue's orgs by slot: ``toPositive(murmur2(org id)) % P``, P the state topic's
   partitions.
3. Which slots are this process's: with ``COORDINATION=group`` (the default), the partitions Kafka's
   group protocol assigns this replica (:mod:`publisher.membership`), as they come and go; with
   ``none``, every slot (a second process then fences the first, which exits 3).
4. Open each owned slot (:mod:`publisher.slot`): its producer's ``init_transactions()`` fences the
   previous owner (a zombie included) and aborts what it left open; then its partition is
   restored (read_committed, to the high watermark).
5. Per org of the slot: the live task on a thread of its own; the replays, gap fills and
   requests handed over by other replicas that were running or pending.

A revoked slot's tasks are stopped and its producer closed before the group moves it. A fencing
on a replica of a group stops the slot and asks the group: still ours (a transaction that timed
out), it is opened again; gone (we were a zombie), it stays closed. One org's failure (a token
revoked, a role missing) is that org's alone: it backs off, doubling up to
``ORG_BACKOFF_MAX_SECONDS``, is named in ``/readyz``, ``state`` and ``cdr_publisher_org_up``, and
recovers by itself when its credentials work again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

import orjson

from publisher import metrics
from publisher.batch import Topics
from publisher.clock import Clock, utcnow
from publisher.errors import FencedError, KafkaError, PublisherError, UsageError
from publisher.events import EventEncoder
from publisher.health import Health
from publisher.kafka.partitioning import slot_of
from publisher.live import LiveTask
from publisher.membership import Membership
from publisher.replay.manager import ReplayManager
from publisher.replay.request import ReplayRequest, is_cancel
from publisher.runtime import Runtime, Services
from publisher.settings import Settings
from publisher.slot import Slot
from publisher.state.codec import LIVE_JOB, parse_key
from publisher.state.memory import OrgState
from publisher.task import TaskContext, TaskStoppedError, retry, stop_aware_sleep
from publisher.webex import native

log = logging.getLogger("publisher.daemon")

# After a fencing, how long to let the group's heartbeats tell whether the slot is still ours.
FENCED_CONFIRM_S = 10.0


@dataclass
class OrgWork:
    """One org's tasks in this process."""

    org: str
    slot: Slot
    state: OrgState
    health: Health
    replays: ReplayManager
    live: LiveTask
    thread: threading.Thread | None = None


@dataclass
class _SlotWork:
    slot: Slot
    orgs: list[str]
    opener: threading.Thread | None = None
    fenced: bool = False
    org_ids: list[str] = field(default_factory=list)


class Worker:
    """Owns slots (all, or the group's share), runs their orgs' tasks until shutdown."""

    def __init__(
        self,
        settings: Settings,
        *,
        services: Services | None = None,
        clock: Clock = utcnow,
        stop: threading.Event | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        self.health = health or Health()
        self.services = services or Runtime(settings, clock=clock, health=self.health)
        self.catalogue = self.services.catalogue
        self.group = settings.coordination == "group"
        self.slots: dict[int, Slot] = {}
        self.orgs: dict[str, OrgWork] = {}
        self.partitions = 0
        self.membership: Membership | None = None
        self._work: dict[int, _SlotWork] = {}
        self._encoder: EventEncoder | None = None
        self._fatal: list[BaseException] = []
        self._lock = threading.RLock()
        self.sleep = stop_aware_sleep(self.stop, self.health)
        if self.group:
            self.health.slots = []
        self.health.fleet = len(self.catalogue.ids) > 1

    # --- the org catalogue on slots ------------------------------------------------------------

    @property
    def live(self) -> LiveTask | None:
        """The live task of a deployment of one org (None before start)."""
        if len(self.orgs) != 1:
            return None
        return next(iter(self.orgs.values())).live

    @property
    def org(self) -> OrgState:
        """The state of a deployment of one org."""
        (work,) = self.orgs.values()
        return work.state

    @property
    def replays(self) -> ReplayManager:
        """The replays of a deployment of one org."""
        (work,) = self.orgs.values()
        return work.replays

    def slots_of_catalogue(self) -> dict[int, list[str]]:
        by_slot: dict[int, list[str]] = {}
        for org_id in self.catalogue.ids:
            by_slot.setdefault(slot_of(org_id, self.partitions), []).append(org_id)
        return by_slot

    def slot_of(self, org_id: str) -> int:
        return slot_of(org_id, self.partitions)

    # --- start-up ------------------------------------------------------------------------------

    def start(self) -> None:
        """Steps 1-2 of the module docstring; without a group, steps 3-4 for every slot."""
        settings = self.settings
        self._encoder = retry(
            "topics and schema registry",
            lambda: self.services.encoder(settings.events_topic),
            sleep=self.sleep,
            health=self.health,
        )
        self.partitions = retry(
            "state topic", self.services.state_partitions, sleep=self.sleep, health=self.health
        )
        if self.partitions != settings.state_partitions:
            log.warning(
                "the state topic has %d partitions (CDR_PUBLISHER_STATE_PARTITIONS=%d applies "
                "only when the publisher creates it); using %d slots",
                self.partitions,
                settings.state_partitions,
                self.partitions,
            )
        if not self.group:
            for number, orgs in sorted(self.slots_of_catalogue().items()):
                self.open_slot(self._new_slot(number, orgs))
        self.health.producer_ready = True
        self.health.state_restored = True
        log.info(
            "started",
            extra={
                "orgs": len(self.catalogue.ids),
                "state_partitions": self.partitions,
                "coordination": settings.coordination,
                "page_reader": native.path_name(),
            },
        )

    def _new_slot(self, number: int, orgs: list[str]) -> _SlotWork:
        slot = Slot(
            number,
            orgs,
            services=self.services,
            sleep=self.sleep,
            on_trouble=self._degraded,
            on_recovered=self._recovered,
            partitions=self.partitions,
            take_back=not self.group,
        )
        work = _SlotWork(slot, orgs)
        with self._lock:
            self._work[number] = work
            self.slots[number] = slot
        return work

    def open_slot(self, work: _SlotWork) -> Slot:
        """Fence and restore ``work``'s slot and make its orgs' tasks (they run on run_org)."""
        slot = work.slot
        sleep = stop_aware_sleep(slot.stop, self.health)
        started = time.monotonic()
        retry(f"slot {slot.number}", slot.open, sleep=sleep, health=self.health)
        self.health.degraded = None
        for org_id in work.orgs:
            self._make_org(slot, org_id)
        work.org_ids = list(work.orgs)
        log.info(
            "state restored",
            extra={
                "slot": slot.number,
                "records": sum(s.records_read for s in slot.states.values()),
                "dedup_marks": sum(s.mark_count for s in slot.states.values()),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return slot

    def _make_org(self, slot: Slot, org_id: str) -> OrgWork:
        settings, services = self.settings, self.services
        state = slot.states[org_id]
        health = Health(producer_ready=True, state_restored=True)
        cursor = state.cursors.get(LIVE_JOB)
        health.cursor = cursor.position if cursor else None
        replays = ReplayManager(services, state, clock=self.clock, health=health, slot=slot)
        sleep = stop_aware_sleep(slot.stop, health)
        if self._encoder is None:
            raise RuntimeError("start() was not called")
        ctx = TaskContext(
            settings=settings,
            org=state,
            owner=slot.owner,
            encoder=self._encoder,
            topics=Topics(events=settings.events_topic, dlq=settings.dlq_topic),
            restore=slot.restore,
            client=lambda: services.client(state, priority=0, sleep=sleep, locations=None),
            clock=self.clock,
            stop=slot.stop,
            health=health,
        )
        live = LiveTask(ctx, record_gap=replays.gap_records, on_gap=replays.on_gap)
        work = OrgWork(org_id, slot, state, health, replays, live)
        with self._lock:
            self.orgs[org_id] = work
            self.health.orgs[org_id] = health
        metrics.DEDUP_MARKS.labels(org=org_id).set(state.mark_count)
        return work

    def _degraded(self, reason: str) -> None:
        self.health.degraded = reason
        self.health.last_error = reason
        log.warning("degraded: %s", reason)

    def _recovered(self) -> None:
        """A slot's producer committed again after the trouble it reported."""
        self.health.degraded = None

    # --- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Start, then run until shutdown. Raises FencedError (no group: another instance owns a
        slot) and errors no retry can mend."""
        self.health.loop_heartbeat = time.monotonic()
        try:
            self.start()
            if self.group:
                self.membership = Membership(
                    self.settings,
                    on_assigned=self._assigned,
                    on_revoked=self._revoked,
                    on_request=self._request,
                )
                self.membership.start()
            else:
                for work in list(self.orgs.values()):
                    self.run_org(work)
            while not self.stop.wait(1.0):
                self.health.loop_heartbeat = time.monotonic()
                if self._fatal:
                    break
        except TaskStoppedError:
            pass
        finally:
            log.info("shutting down")
            self.stop.set()
            self.close()
        if self._fatal:
            raise self._fatal[0]

    def run_org(self, work: OrgWork) -> None:
        """Resume the org's replays and requests, start its live task on a thread."""
        work.replays.resume_unfinished()
        work.thread = threading.Thread(
            target=self._live, args=(work,), name=f"live-{work.org}", daemon=True
        )
        work.thread.start()

    def _live(self, work: OrgWork) -> None:
        """The org's live task, started again after anything that is the org's own problem."""
        delay = self.settings.poll_interval_seconds
        ceiling = max(self.settings.org_backoff_max_seconds, delay)
        sleep = stop_aware_sleep(work.slot.stop, work.health)
        while not work.slot.stop.is_set():
            try:
                work.live.run()
                return
            except TaskStoppedError:
                return
            except FencedError as exc:
                if self.group:
                    self._slot_fenced(work.slot.number, exc)
                else:
                    self._fail(exc)
                return
            except KafkaError as exc:
                if not exc.retriable:
                    self._fail(exc)
                    return
                problem = f"kafka: {exc}"
            except PublisherError as exc:
                # Credentials that cannot be read (a token file gone), and the like: this org's.
                problem = str(exc)
            except Exception as exc:  # one org's bug must not stop the others
                log.exception("org %s: live task crashed", work.org)
                problem = f"crashed: {type(exc).__name__}"
            work.health.degraded = problem
            metrics.ORG_UP.labels(org=work.org).set(0)
            log.warning("org %s: %s; retrying in %.0fs", work.org, problem, delay)
            try:
                sleep(delay)
            except TaskStoppedError:
                return
            delay = min(delay * 2, ceiling)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._fatal.append(exc)
        self.stop.set()

    # --- the group's decisions (on the membership thread) --------------------------------------

    def _assigned(self, numbers: list[int]) -> None:
        by_slot = self.slots_of_catalogue()
        self.health.joined = True
        for number in numbers:
            with self._lock:
                if self.health.slots is not None and number not in self.health.slots:
                    self.health.slots.append(number)
            orgs = by_slot.get(number, [])
            if orgs:
                self._open_in_background(number, orgs)

    def _open_in_background(self, number: int, orgs: list[str]) -> None:
        work = self._new_slot(number, orgs)
        work.opener = threading.Thread(
            target=self._open_and_run, args=(work,), name=f"slot-{number}", daemon=True
        )
        work.opener.start()

    def _open_and_run(self, work: _SlotWork) -> None:
        try:
            self.open_slot(work)
        except TaskStoppedError:
            return  # revoked (or shutting down) while it opened
        except PublisherError as exc:
            log.error("slot %d cannot be opened: %s", work.slot.number, exc)  # noqa: TRY400
            self._fail(exc)
            return
        if work.slot.stop.is_set():
            return
        for org_id in work.org_ids:
            self.run_org(self.orgs[org_id])

    def _revoked(self, numbers: list[int], lost: bool) -> None:
        for number in numbers:
            with self._lock:
                if self.health.slots is not None and number in self.health.slots:
                    self.health.slots.remove(number)
            started = time.monotonic()
            self.close_slot(number)
            log.info(
                "slot lost" if lost else "slot released",
                extra={"slot": number, "seconds": round(time.monotonic() - started, 3)},
            )

    def _slot_fenced(self, number: int, error: FencedError) -> None:
        """A fencing on a replica of a group: stop the slot and ask the group whether it is still
        ours (our transaction timed out) or not (we were paused past the session timeout)."""
        with self._lock:
            work = self._work.get(number)
            if work is None or work.fenced:
                return
            work.fenced = True
        log.warning("slot %d fenced (%s); stopping it and asking the group", number, error)

        def confirm() -> None:
            self.close_slot(number)
            if self.stop.wait(FENCED_CONFIRM_S):
                return
            if self.membership is not None and self.membership.assigned(number):
                log.info("slot %d is still ours: opening it again", number)
                orgs = self.slots_of_catalogue().get(number, [])
                if orgs:
                    self._open_in_background(number, orgs)
            else:
                log.info("slot %d belongs to another replica now", number)

        threading.Thread(target=confirm, name=f"fenced-{number}", daemon=True).start()

    def _request(self, _partition: int, key: bytes, value: bytes) -> None:
        """A replay request another replica handed over for an org of one of our slots."""
        parsed = parse_key(key)
        if parsed is None or parsed.kind != "request" or parsed.org is None:
            return
        with self._lock:
            work = self.orgs.get(parsed.org)
        if work is None:
            return  # not open yet: its restore will find the request
        try:
            data = orjson.loads(value)
            if isinstance(data, dict) and is_cancel(data):
                # Off the membership thread: a cancel waits for the replay's last commit.
                threading.Thread(
                    target=work.replays.cancel_handed_over,
                    args=(parsed.name,),
                    name=f"cancel-{parsed.name}",
                    daemon=True,
                ).start()
                return
            request = ReplayRequest.from_json(data, now=self.clock())
            work.replays.submit(request)
        except (orjson.JSONDecodeError, UsageError) as exc:
            log.warning("replay request %s refused: %s", key.decode(errors="replace"), exc)

    # --- stopping ------------------------------------------------------------------------------

    def close_slot(self, number: int) -> None:
        """Stop the slot's tasks (its replays stay resumable), abort, close its producer."""
        with self._lock:
            work = self._work.pop(number, None)
            self.slots.pop(number, None)
        if work is None:
            return
        work.slot.stop.set()
        if work.opener is not None and work.opener is not threading.current_thread():
            work.opener.join(timeout=30)
        for org_id in work.org_ids:
            with self._lock:
                org = self.orgs.pop(org_id, None)
                self.health.orgs.pop(org_id, None)
            if org is None:
                continue
            org.replays.close()
            if org.thread is not None and org.thread is not threading.current_thread():
                org.thread.join(timeout=30)
            metrics.forget_org(org_id)
            self.services.forget_org(org_id)
        work.slot.close()

    def close(self) -> None:
        """Stop every task (replays stay resumable), abort open transactions, close producers."""
        with self._lock:
            slots = list(self._work)
        for number in slots:
            with self._lock:
                work = self._work.get(number)
            if work is not None:
                work.slot.stop.set()
        if self.membership is not None:
            # Leaving the group runs the revocation of what is left, on this thread.
            self.membership.close()
        for number in slots:
            self.close_slot(number)


SHUTDOWN_DEADLINE_S = 9.0


def _exit_now() -> None:
    log.warning("shutdown took longer than %.0fs; exiting without waiting", SHUTDOWN_DEADLINE_S)
    logging.shutdown()
    os._exit(0)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT stop the tasks at their next wait or page; open transactions are aborted.

    A blocking call (an HTTP request near its timeout, a commit retried while the broker is away)
    could hold that past what orchestrators allow, so a watchdog exits 0 after 9 s regardless: an
    open transaction is safe to leave, the next owner's init_transactions aborts it.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s received", signal.Signals(signum).name)
        if stop.is_set():
            return
        stop.set()
        watchdog = threading.Timer(SHUTDOWN_DEADLINE_S, _exit_now)
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
