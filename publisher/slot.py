"""A slot: partition ``n`` of the state topic and everything that writes to it.

Every org belongs to one slot, ``toPositive(murmur2(org id)) % P`` as Kafka's default
partitioner computes it, and every job of that org (live stream, gap fills, replays) writes its
state to that partition only, through the slot's one transactional producer
(``cdr-publisher.<deployment>.slot.<n>``): a process needs P producers, not one per org, and an
abort touches only that slot's orgs. The slot's lock is its orgs' lock: one transaction at a
time per producer, and check-then-commit atomic for every org of the slot.

Opening a slot, in this order:

1. On a state topic of one partition (the layout before slots, one org per deployment), every
   org's old ``transactional.id`` (``cdr-publisher.<deployment>.<org>.live``) is initialised once:
   that fences an old daemon still running and aborts what it left open.
2. The slot's producer: ``init_transactions()`` fences the slot's previous owner (a zombie
   included) and aborts what it left open.
3. Restore the partition (read_committed, to its high watermark) into the orgs' states.

Closing: abort the open transaction and close the producer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from publisher import metrics
from publisher.kafka.owner import TransactionalOwner
from publisher.runtime import Services
from publisher.settings import Settings
from publisher.state.memory import OrgState

log = logging.getLogger("publisher.slot")


def slot_transactional_id(settings: Settings, number: int) -> str:
    return f"cdr-publisher.{settings.deployment_id}.slot.{number}"


def legacy_transactional_id(settings: Settings, org: str) -> str:
    """The live job's id before slots: one producer per (deployment, org)."""
    return f"cdr-publisher.{settings.deployment_id}.{org}.live"


class Slot:
    """One state partition, its producer, its lock and the states of its orgs."""

    def __init__(
        self,
        number: int,
        orgs: Iterable[str],
        *,
        services: Services,
        sleep: Callable[[float], None],
        on_trouble: Callable[[str], None],
        on_recovered: Callable[[], None] | None = None,
        partitions: int,
        take_back: bool = True,
    ) -> None:
        settings = services.settings
        self.number = number
        self.partitions = partitions
        self.services = services
        self.lock = threading.RLock()
        self.stop = threading.Event()
        """Set when the slot is revoked or the process stops: its tasks stop at their next wait."""
        partition = number if partitions > 1 else None
        self.states = {
            org: OrgState(settings.deployment_id, org, lock=self.lock, partition=partition)
            for org in orgs
        }
        self.owner: TransactionalOwner = services.owner(
            slot_transactional_id(settings, number),
            sleep=sleep,
            on_trouble=on_trouble,
            on_recovered=on_recovered,
            take_back=take_back,
        )
        self.owner.on_committed = self._committed
        self._previous_commit: datetime | None = None
        self._handed_over = False
        self._sleep = sleep
        self._on_trouble = on_trouble

    @property
    def transactional_id(self) -> str:
        return self.owner.transactional_id

    def open(self) -> None:
        """Steps 1-3 of the module docstring."""
        settings = self.services.settings
        if self.partitions == 1:
            for org in self.states:
                old = self.services.owner(
                    legacy_transactional_id(settings, org),
                    sleep=self._sleep,
                    on_trouble=self._on_trouble,
                )
                old.start()
                old.close()
        self.owner.start()
        self.restore()
        commits = [
            cursor.committed_at
            for state in self.states.values()
            for cursor in state.cursors.values()
        ]
        self._previous_commit = max(commits, default=None)
        self._handed_over = False
        log.info(
            "slot opened",
            extra={"slot": self.number, "orgs": len(self.states), "id": self.transactional_id},
        )

    def _committed(self) -> None:
        """The first commit of this owner: how long the slot went without one (a handover)."""
        if self._handed_over:
            return
        self._handed_over = True
        if self._previous_commit is not None:
            gap = (datetime.now(UTC) - self._previous_commit).total_seconds()
            metrics.SLOT_HANDOVER.observe(max(0.0, gap))
            log.info("slot resumed", extra={"slot": self.number, "seconds_without_commit": gap})

    def restore(self) -> None:
        """Read this slot's partition back into its orgs' states."""
        self.services.restore(
            list(self.states.values()), partition=self.number if self.partitions > 1 else None
        )

    def close(self) -> None:
        self.owner.close()
