"""``cdr-publisher state``: cursor per org and job, live dedup marks, last commit, replays."""

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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415
    from collections import defaultdict  # noqa: PLC0415

    from publisher.dedup import unpack_marks  # noqa: PLC0415
    from publisher.kafka.config import consumer_config  # noqa: PLC0415
    from publisher.kafka.state import Cursor, read_topic  # noqa: PLC0415
    from publisher.settings import load_settings  # noqa: PLC0415
    from publisher.webex.record import format_timestamp  # noqa: PLC0415

    settings = load_settings(args.config)
    records = read_topic(consumer_config(settings, "cdr-publisher-state"), settings.state_topic)
    latest = dict(records)  # later records of a key win, as compaction would have it
    oldest_hour = int((time.time() - settings.dedup_horizon_seconds) // 3600)
    cursors: dict[str, Cursor] = {}
    marks: dict[str, int] = defaultdict(int)
    replays = []
    for key, value in latest.items():
        if value is None:
            continue
        parts = key.decode().split("/")
        if parts[0] == "cursor":
            cursors["/".join(parts[1:])] = Cursor.decode(value)
        elif parts[0] == "dedup" and int(parts[3]) >= oldest_hour:
            marks["/".join(parts[1:3])] += len(unpack_marks(value))
        elif parts[0] == "replay":
            replays.append(parts[1])
    print(f"state topic {settings.state_topic}: {len(records)} records read")
    if not cursors:
        print("no cursor yet: the daemon has not committed anything")
    for job, cursor in sorted(cursors.items()):
        print(
            f"{job:<30} cursor {format_timestamp(cursor.position)}  "
            f"last commit {format_timestamp(cursor.committed_at)}  seq {cursor.seq}  "
            f"dedup marks {marks.get(job, 0)}  region {cursor.region_base_url or '-'}"
        )
    for replay in sorted(replays):
        print(f"replay {replay}")
    return EXIT_OK
