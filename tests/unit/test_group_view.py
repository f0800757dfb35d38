"""The replicas `state` prints from the consumer group's description (pure formatting)."""

from __future__ import annotations

from publisher.kafka.group import GroupView, Replica, format_view


def test_each_replica_is_shown_with_its_slots_and_the_orgs_they_hold() -> None:
    view = GroupView(
        "cdr-publisher.prod",
        "STABLE",
        (Replica("pod-0", "10.0.0.5", (0, 2)), Replica("pod-1", "10.0.0.6", (1,))),
        partitions=4,
    )
    lines = format_view(view, {0: ["a", "b"], 1: ["c"], 2: [], 3: ["d"]})
    assert lines == [
        "replicas in consumer group cdr-publisher.prod (STABLE):",
        "  pod-0 at 10.0.0.5: slots 0,2 (2 orgs)",
        "  pod-1 at 10.0.0.6: slots 1 (1 orgs)",
        "  slots with orgs and no owner: 3",
    ]


def test_a_group_without_members_says_so() -> None:
    view = GroupView("cdr-publisher.prod", "EMPTY", (), partitions=12)
    assert format_view(view, {0: ["a"]}) == [
        (
            "replicas: none in consumer group cdr-publisher.prod (EMPTY; none is running,"
            " or it runs with COORDINATION=none)"
        )
    ]
