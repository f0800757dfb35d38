"""``cdr-publisher state``: cursor per org and job, live dedup marks, last commit, replays and
gaps (spans the stream could no longer serve, and their filling from the feed)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from publisher.cli import EXIT_OK


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "state", help="show the cursor, dedup marks and last commit from the state topic"
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.add_argument("--topic", help="state topic (default: the STATE_TOPIC setting)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    from publisher.cli_support import (  # noqa: PLC0415
        OneLineErrors,
        check_reachable,
        configured,
        load_reader_settings,
        reader_config,
    )
    from publisher.kafka.state import read_state  # noqa: PLC0415
    from publisher.state.codec import fold, parse_key, shares_marks  # noqa: PLC0415
    from publisher.webex.record import format_timestamp  # noqa: PLC0415

    settings = load_reader_settings(args.config)
    topic = args.topic or settings.state_topic
    check_reachable(settings, topic)
    records = read_state(reader_config(settings, "cdr-publisher-state", OneLineErrors()), topic)
    deployments = [settings.deployment_id]
    if "deployment_id" not in configured(args.config, ("deployment_id",)):
        # Nobody named the deployment (e.g. the demo's topic, written by deployment demo.<run>):
        # show every deployment the topic holds.
        found = {p.deployment for k, _ in records if (p := parse_key(k)) and p.deployment}
        deployments = sorted(found) or deployments
    oldest_hour = int((time.time() - settings.dedup_horizon_seconds) // 3600)
    print(f"state topic {topic}: {len(records)} records read")
    orgs = {
        (deployment, org_id): org
        for deployment in deployments
        for org_id, org in fold(records, deployment=deployment, orgs=None).items()
    }
    if not any(org.cursors for org in orgs.values()):
        print("no cursor yet: the daemon has not committed anything")
    shown = settings.deployment_id
    for (deployment, org_id), org in sorted(orgs.items()):
        if deployment != shown:
            print(f"deployment {deployment}:")
            shown = deployment
        marks = sum(
            len(m.marks) for m in org.marks if shares_marks(m.job) and m.hour >= oldest_hour
        )
        for job, cursor in sorted(org.cursors.items()):
            print(
                f"{org_id}/{job:<24} cursor {format_timestamp(cursor.position)}  "
                f"last commit {format_timestamp(cursor.committed_at)}  seq {cursor.seq}  "
                f"dedup marks {marks}  region {cursor.region_base_url or '-'}"
            )
        if not org.cursors:
            print(f"{org_id}/live  no cursor yet")
        if org.status:
            print(f"{org_id}  failing since {org.status.get('since')}: {org.status.get('problem')}")
        for replay_id, progress in sorted(org.replays.items()):
            kind = "gap" if progress.get("origin") == "gap" else "replay"
            print(
                f"{org_id}/{kind} {replay_id}  {progress.get('status')}  "
                f"[{progress.get('start')}, {progress.get('end')})  windows "
                f"{progress.get('windows_done')}/{progress.get('windows_total')}  "
                f"published {progress.get('published')}"
                + (f"  ({progress['error']})" if progress.get("error") else "")
            )
    _print_replicas(settings, topic, deployments, [org for (_d, org) in orgs])
    return EXIT_OK


def _print_replicas(settings: Any, topic: str, deployments: list[str], org_ids: list[str]) -> None:
    """Each deployment's replicas (its consumer group) with the slots they own."""
    from publisher.cli_support import OneLineErrors, reader_config  # noqa: PLC0415
    from publisher.kafka import group  # noqa: PLC0415
    from publisher.kafka.partitioning import slot_of  # noqa: PLC0415

    config = reader_config(settings, "cdr-publisher-state", OneLineErrors())
    for key in ("group.id", "enable.auto.commit", "auto.offset.reset", "isolation.level"):
        config.pop(key, None)  # consumer properties an admin client warns about
    for deployment in deployments:
        view = group.describe(config, f"cdr-publisher.{deployment}", topic)
        if isinstance(view, str):
            print(f"replicas: unknown ({view})")
            continue
        by_slot: dict[int, list[str]] = {}
        for org_id in org_ids:
            by_slot.setdefault(slot_of(org_id, view.partitions), []).append(org_id)
        for line in group.format_view(view, by_slot):
            print(line)
