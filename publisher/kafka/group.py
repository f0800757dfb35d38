"""Who owns which slot: the replicas of a deployment as its consumer group describes them.

Each replica is a member of ``cdr-publisher.<deployment>`` (:mod:`publisher.membership`); the
state-topic partitions the group assigned it are its slots. The broker is the one source of that
truth, so ``state`` asks it instead of any replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    """``group.instance.id`` (static membership, e.g. the pod name), else the client id."""
    host: str
    slots: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GroupView:
    group_id: str
    state: str
    """The group state the broker reports (``STABLE``, ``PREPARING_REBALANCE``, ``EMPTY``...)."""
    replicas: tuple[Replica, ...]
    partitions: int
    """The state topic's partitions: its slots."""


def describe(
    config: dict[str, Any], group_id: str, topic: str, timeout: float = 10.0
) -> GroupView | str:
    """The group's replicas and their slots of ``topic``, or why they cannot be known."""
    admin = AdminClient(config)
    try:
        found = admin.describe_consumer_groups([group_id], request_timeout=timeout)
        description = found[group_id].result(timeout=timeout)
        partitions = len(admin.list_topics(topic, timeout=timeout).topics[topic].partitions)
    except KafkaException as exc:
        return f"cannot describe the consumer group {group_id}: {exc.args[0].str()}"
    replicas = [
        Replica(
            name=member.group_instance_id or member.client_id,
            host=member.host.lstrip("/"),
            slots=tuple(
                sorted(
                    tp.partition
                    for tp in (member.assignment.topic_partitions if member.assignment else [])
                    if tp.topic == topic
                )
            ),
        )
        for member in description.members
    ]
    state = getattr(description.state, "name", str(description.state))
    return GroupView(group_id, state, tuple(sorted(replicas, key=lambda r: r.name)), partitions)


def format_view(view: GroupView, orgs_by_slot: dict[int, list[str]]) -> list[str]:
    """Lines for ``state``: one per replica with its slots and how many known orgs they hold,
    then the slots with orgs that no replica owns (publishing nothing now)."""
    if not view.replicas:
        return [
            (
                f"replicas: none in consumer group {view.group_id} ({view.state}; none is running,"
                " or it runs with COORDINATION=none)"
            )
        ]
    lines = [f"replicas in consumer group {view.group_id} ({view.state}):"]
    owned: set[int] = set()
    for replica in view.replicas:
        owned.update(replica.slots)
        orgs = sum(len(orgs_by_slot.get(slot, [])) for slot in replica.slots)
        slots = ",".join(str(s) for s in replica.slots) or "-"
        lines.append(f"  {replica.name} at {replica.host}: slots {slots} ({orgs} orgs)")
    orphans = sorted(slot for slot, orgs in orgs_by_slot.items() if orgs and slot not in owned)
    if orphans:
        lines.append("  slots with orgs and no owner: " + ",".join(str(s) for s in orphans))
    return lines
