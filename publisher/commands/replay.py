"""``cdr-publisher replay``: publish a past span from cdr_feed again, exactly once, resumable.

When a daemon of this deployment answers on its admin endpoint (HTTP_HOST:HTTP_PORT), the replay
is handed to it (``POST /replays``) so that both share the token's rate limit, and this command
follows its progress; otherwise the replay runs here. Stdout: ``replay <id>`` first, progress
lines when stdout is not a terminal (a progress bar on stderr when it is), the dry-run table, and a
last line with the final status as JSON.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from publisher.cli import EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from publisher.replay import ReplayRequest
    from publisher.settings import Settings

POLL_S = 0.5
STARTING_WAIT_S = 120.0


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "replay",
        help="publish a past span (last 30 days) from cdr_feed again, exactly once",
        description=(
            "Replay [start, end) from cdr_feed. fill-gaps (default) publishes only the records "
            "whose Report ID the events topic does not hold yet; republish publishes every record "
            "again, marked with the replay id. Started again with the same --id, a replay resumes "
            "where it stopped."
        ),
    )
    parser.add_argument("--start", required=True, metavar="ISO", help="span start (UTC if no zone)")
    parser.add_argument("--end", required=True, metavar="ISO", help="span end, exclusive")
    parser.add_argument("--id", dest="replay_id", help="names the replay (default: generated)")
    parser.add_argument("--org", help="org id (must be this deployment's CDR_PUBLISHER_ORG_ID)")
    parser.add_argument(
        "--locations",
        action="append",
        default=[],
        metavar="NAMES",
        help="location names, comma separated (at most 10)",
    )
    parser.add_argument(
        "--mode", default="fill-gaps", help="fill-gaps (default) or republish", metavar="MODE"
    )
    parser.add_argument("--topic", help="publish to this topic instead of the events topic")
    parser.add_argument(
        "--dry-run", action="store_true", help="count what each mode would publish; publish nothing"
    )
    parser.add_argument(
        "--widen-minutes",
        type=float,
        default=60.0,
        help="fetch this much before --start too, for calls that began earlier (default 60)",
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from publisher import logs  # noqa: PLC0415 - keep --help fast
    from publisher.clock import utcnow  # noqa: PLC0415
    from publisher.replay import (  # noqa: PLC0415
        ReplayRequest,
        new_replay_id,
        parse_mode,
        parse_time,
        plan,
        split_locations,
    )
    from publisher.settings import load_settings, read_admin_token  # noqa: PLC0415

    now = utcnow()
    request = ReplayRequest(
        replay_id=args.replay_id or new_replay_id(now),
        start=parse_time(args.start, "--start"),
        end=parse_time(args.end, "--end"),
        mode=parse_mode(args.mode),
        org=args.org,
        topic=args.topic,
        locations=split_locations(args.locations),
        dry_run=args.dry_run,
        widen=timedelta(minutes=args.widen_minutes),
    )
    settings = load_settings(args.config)
    org_id = choose_org(settings, args.org)
    request = replace(request, org=org_id)
    # Bad input stops here, before anything is fetched or published (exit 2).
    plan(
        request,
        now=now,
        org_id=org_id,
        skew=timedelta(seconds=settings.webex_clock_skew_seconds),
        topic_pattern=settings.replay_topic_regex(),
        reserved_topics=(settings.state_topic, settings.dlq_topic),
    )
    logs.configure(settings.log_level, "console")
    # Also the secret KAFKA_EXTRA properties, URL passwords and the admin token.
    for secret in settings.secret_values():
        logs.register_secret(secret)
    admin_token = read_admin_token(settings)
    logs.register_secret(admin_token)
    print(f"replay {request.replay_id}", flush=True)
    auth = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    daemon = find_daemon(settings, auth, org_id)
    final = _hand_off(daemon, request, auth) if daemon is not None else _run_here(settings, request)
    return _report(final, request)


# --- a daemon to hand the replay to -------------------------------------------------------------


def find_daemon(
    settings: Settings, auth: dict[str, str] | None = None, org_id: str | None = None
) -> str | None:
    """The admin URL of a daemon of this deployment and org, or None when none answers.

    ``auth`` carries the admin token. A daemon that refuses it (no token here, a wrong one, or
    its admin routes disabled) is a PublisherError saying so: running the replay here instead
    would compete with it for the token's rate limit behind the operator's back.
    """
    import requests  # noqa: PLC0415

    if settings.http_port == 0:
        return None
    host = settings.http_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a listening address, not a bind
        host = "127.0.0.1"
    url = f"http://{host}:{settings.http_port}"
    try:
        reply = requests.get(f"{url}/replays", headers=auth or {}, timeout=3)
    except requests.RequestException:
        return None
    try:
        data = reply.json()
    except ValueError:
        data = None
    _raise_if_refused(url, reply.status_code, data)
    orgs = (data.get("orgs") or [data.get("org_id")]) if isinstance(data, dict) else []
    if (
        reply.status_code == 200
        and isinstance(data, dict)
        and (org_id is None or org_id in orgs)
        and data.get("deployment_id") == settings.deployment_id
    ):
        return url
    print(
        f"cdr-publisher: {url} answers but is not a daemon of deployment "
        f"{settings.deployment_id!r} serving org {org_id!r}; running the replay here",
        file=sys.stderr,
    )
    return None


def choose_org(settings: Settings, asked: str | None) -> str:
    """The org a replay is for: ``--org``, or the deployment's only org; UsageError otherwise."""
    from publisher.errors import UsageError  # noqa: PLC0415
    from publisher.orgs import build_catalogue  # noqa: PLC0415

    ids = build_catalogue(settings).ids
    serves = f"org {ids[0]!r}" if len(ids) == 1 else f"orgs {', '.join(ids)}"
    if asked is None:
        if len(ids) == 1:
            return ids[0]
        raise UsageError(f"name the org with --org: this deployment serves {serves}")
    if asked not in ids:
        raise UsageError(f"unknown org {asked!r}: this deployment serves {serves}")
    return asked


def _raise_if_refused(url: str, status: int, data: object) -> None:
    """A PublisherError when the daemon's answer is its admin refusal (401/403)."""
    from publisher.errors import PublisherError  # noqa: PLC0415

    if status not in (401, 403) or not isinstance(data, dict) or data.get("admin") != "refused":
        return
    if status == 403:
        fix = "set CDR_PUBLISHER_ADMIN_TOKEN (or _FILE) for the daemon and for this command"
    else:
        fix = "set CDR_PUBLISHER_ADMIN_TOKEN (or _FILE) here to the daemon's admin token"
    raise PublisherError(
        f"the daemon at {url} refuses the replay: {data.get('error')} (HTTP {status}); {fix}, "
        "or set CDR_PUBLISHER_HTTP_PORT=0 to run the replay in this process instead"
    )


def _hand_off(url: str, request: ReplayRequest, auth: dict[str, str]) -> dict[str, Any]:
    import requests  # noqa: PLC0415

    from publisher.errors import PublisherError, UsageError  # noqa: PLC0415

    deadline = time.monotonic() + STARTING_WAIT_S
    while True:
        reply = requests.post(f"{url}/replays", json=request.to_json(), headers=auth, timeout=30)
        try:
            body = reply.json()
        except ValueError:
            body = {"error": reply.text[:200]}
        # 503: the daemon is starting and the org's slot is not open yet.
        if reply.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    _raise_if_refused(url, reply.status_code, body)
    if reply.status_code == 400:
        raise UsageError(str(body.get("error")))
    if reply.status_code not in (200, 202):
        raise PublisherError(f"the daemon refused the replay: HTTP {reply.status_code} {body}")
    print(f"handed to the daemon at {url}; following its progress", file=sys.stderr, flush=True)
    stop = _stop_on_signals()

    def fetch() -> dict[str, Any]:
        try:
            answer = requests.get(f"{url}/replays/{request.replay_id}", headers=auth, timeout=10)
            if answer.status_code == 200:
                data: dict[str, Any] = answer.json()
                return data
        except requests.RequestException:
            pass
        return dict(body, status="running")

    status = _follow(fetch, stop.is_set, stop)
    if stop.is_set() and status.get("status") in ("running", "pending"):
        print(
            f"detached: the replay goes on in the daemon (GET {url}/replays/{request.replay_id}; "
            "DELETE it to cancel)",
            file=sys.stderr,
        )
    return status


# --- running here -------------------------------------------------------------------------------


def _run_here(settings: Settings, request: ReplayRequest) -> dict[str, Any]:
    from publisher import malloc  # noqa: PLC0415
    from publisher.errors import PublisherError, UsageError  # noqa: PLC0415
    from publisher.health import Health  # noqa: PLC0415
    from publisher.replay import ReplayJob  # noqa: PLC0415
    from publisher.runtime import Runtime  # noqa: PLC0415
    from publisher.state.memory import OrgState  # noqa: PLC0415

    malloc.configure()  # as the daemon does (publisher.malloc)
    org = OrgState(settings.deployment_id, request.org or settings.org_id)
    job = ReplayJob(Runtime(settings, health=Health()), org, request)
    stop = _stop_on_signals(job.stop)
    failure: list[PublisherError] = []

    def work() -> None:
        try:
            job.run()
        except PublisherError as exc:
            failure.append(exc)

    worker = threading.Thread(target=work, name=f"replay-{request.replay_id}")
    worker.start()
    try:
        status = _follow(job.status, lambda: not worker.is_alive(), stop)
    finally:
        stop.set()  # a no-op when the job has ended; otherwise it stops, resumable
        worker.join()
    if failure and isinstance(failure[0], UsageError):
        raise failure[0]
    return status


def _stop_on_signals(event: threading.Event | None = None) -> threading.Event:
    stop = event or threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


# --- progress -----------------------------------------------------------------------------------


def _follow(
    fetch: Callable[[], dict[str, Any]], finished: Callable[[], bool], stop: threading.Event
) -> dict[str, Any]:
    """Render ``fetch()`` until the replay ends or ``finished()``; returns the last status."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: PLC0415

    terminal = sys.stderr.isatty()
    last_done = -1
    columns = (
        TextColumn("[bold]windows"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[figures]}"),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not terminal) as bar:
        task = bar.add_task("replay", total=None, figures="")
        while True:
            ended = finished()
            status = fetch()
            ended = ended or status.get("status") not in ("pending", "running")
            done = int(status.get("windows_done", 0))
            bar.update(
                task,
                total=status.get("windows_total") or None,
                completed=done,
                figures=_figures(status),
            )
            if not terminal and done != last_done:
                last_done = done
                print(
                    f"window {done}/{status.get('windows_total')}: {_figures(status)}", flush=True
                )
            if ended:
                return status
            stop.wait(POLL_S)


def _figures(status: dict[str, Any]) -> str:
    waiting = " [waiting on the rate limit]" if status.get("waiting_rate_limit") else ""
    if status.get("dry_run"):
        counted = f"{status.get('fetched', 0)} records fetched"
    else:
        counted = f"{status.get('published', 0)} published, {status.get('dlq', 0)} to the DLQ"
    return (
        f"{counted}, {status.get('duplicates_skipped', 0)} duplicates skipped, "
        f"{status.get('rate_limit_wait_s', 0):.0f}s waited on the rate limit{waiting}, "
        f"ETA >= {status.get('eta_s', 0):.0f}s"
    )


def _report(status: dict[str, Any], request: ReplayRequest) -> int:
    import orjson  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    if status.get("dry_run") and status.get("window_counts"):
        table = Table(title=f"dry run {request.replay_id}: what each mode would publish")
        for column in (
            "window start",
            "window end",
            "fetched",
            "in topic",
            "fill-gaps",
            "republish",
        ):
            table.add_column(column, justify="right" if column[0] != "w" else "left")
        for row in status["window_counts"]:
            table.add_row(
                row["start"],
                row["end"],
                str(row["fetched"]),
                str(row["already_published"]),
                str(row["fill-gaps"]),
                str(row["republish"]),
            )
        Console(file=sys.stdout, width=120).print(table)
    sys.stdout.write(orjson.dumps(status).decode() + "\n")
    sys.stdout.flush()
    state = status.get("status")
    if state == "done":
        return EXIT_OK
    if state == "failed":
        print(f"cdr-publisher: replay failed: {status.get('error')}", file=sys.stderr)
    elif state in ("stopped", "cancelled", "running", "pending"):
        print(
            f"cdr-publisher: replay {request.replay_id} {state}; run the same command with "
            f"--id {request.replay_id} to resume",
            file=sys.stderr,
        )
    return EXIT_FAILURE
