"""What a newcomer is told to run works as printed: `make demo`'s command, then each command it
and the README print, with no CDR_PUBLISHER_* variable set, against the local stack."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _clean_env() -> dict[str, str]:
    """The environment of a fresh shell: no publisher settings, no cluster named; only the
    stack's ports (CDR_STACK_*), which the commands must honour."""
    drop = ("CDR_PUBLISHER_", "KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture(scope="module")
def local_stack(kafka_cluster: Cluster) -> Iterator[None]:
    """The local stack these commands find by themselves (the session's cluster when it is the
    local stack; started here, and stopped afterwards, when the session used another)."""
    from publisher import stack

    config = stack.StackConfig.from_env()
    was_running = set(stack.running(config))
    stack.up(config)
    try:
        yield
    finally:
        if not was_running and kafka_cluster.origin != "local stack":
            stack.down(config)


@pytest.fixture(scope="module")
def demo_output(local_stack: None) -> str:
    """The output of `cdr-publisher demo` (what `make demo` runs), run as a newcomer would."""
    proc = subprocess.run(
        [sys.executable, "-m", "publisher", "demo"],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _printed_commands(output: str) -> list[str]:
    block = output.split("The stack stays up. Look around", 1)[1].splitlines()[1:]
    return [line.strip() for line in block if line.startswith("  ")]


def _run(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command),
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_demo_prints_the_commands_the_readme_shows(demo_output: str) -> None:
    """The commands the demo prints are the README's, with the demo's topic names filled in."""
    commands = _printed_commands(demo_output)
    block = re.search(
        r"<!-- demo-commands:begin -->\n```sh\n(.*?)```", README.read_text(), flags=re.DOTALL
    )
    assert block, "README lacks the demo-commands block"
    events = re.search(r"--topic (demo\.\S+\.cdr)\b", demo_output)
    assert events, demo_output[-2000:]
    filled = [
        line.replace("<events topic>", events.group(1)).replace(
            "<state topic>", events.group(1) + ".state"
        )
        for line in block.group(1).splitlines()
    ]

    assert commands == filled


def test_each_printed_command_works_as_printed(demo_output: str) -> None:
    """tail, calls and state, run exactly as printed with no setting, find the local stack, say
    so in one line, and show what the demo published; no raw librdkafka line, no traceback."""
    commands = [c for c in _printed_commands(demo_output) if not c.startswith("make ")]
    assert [shlex.split(c)[1] for c in commands] == ["tail", "calls", "state"]
    results = {shlex.split(c)[1]: _run(c) for c in commands}

    for name, proc in results.items():
        assert proc.returncode == 0, (name, proc.stdout[-2000:], proc.stderr[-2000:])
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, (name, proc.stderr)
        assert "using the local stack" in lines[0]
        assert "FAIL" not in proc.stderr
        assert "Traceback" not in proc.stderr
    assert results["tail"].stdout.count("--- demo.") == 3
    calls = [json.loads(line) for line in results["calls"].stdout.splitlines()]
    assert len(calls) == 5
    assert all(c["report_ids"] and c["correlation_id"] for c in calls)
    assert "cursor" in results["state"].stdout
    # The demo's three orgs under one deployment heading, each with its live cursor.
    state = results["state"].stdout
    assert state.count("deployment demo.") == 1, state
    assert len(re.findall(r"^\S+/live\s+cursor ", state, flags=re.MULTILINE)) == 3, state


def test_an_unreachable_broker_is_one_line_not_librdkafka_output(local_stack: None) -> None:
    """With a bootstrap server nobody listens on, each command fails with exit 1 and one line
    that says what to do, instead of librdkafka's own FAIL lines."""
    env = {**_clean_env(), "CDR_PUBLISHER_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    for command in ("tail --max 1", "calls --max 1", "state"):
        proc = subprocess.run(
            [sys.executable, "-m", "publisher", *command.split()],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = [line for line in proc.stderr.splitlines() if "using the local stack" not in line]

        assert proc.returncode == 1, (command, proc.stderr)
        assert len(lines) == 1, (command, proc.stderr)
        assert lines[0].startswith("cdr-publisher: error: cannot reach Kafka at 127.0.0.1:9")
        assert "FAIL" not in proc.stderr
