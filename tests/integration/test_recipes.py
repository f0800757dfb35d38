"""The docs/consumers.md recipes, run as written against a topic the real daemon published:
Apicurio's Java serde with validation on, confluent-kafka's JSONDeserializer, Kafka's console
consumer and kcat, each with read_committed, each decoding every event."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from publisher.events import EventEncoder, Source, build_event
from publisher.registry import ensure_event_schema
from publisher.webex.record import Cdr, parse_record
from tests.integration.kafka_helpers import create_topic
from tests.integration.published import Published

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "consumers.md"
JAVA = ROOT / "tests" / "integration" / "java"
SAMPLES = ROOT / "tests" / "data" / "samples.json"


def _recipe(name: str) -> str:
    found = re.search(
        rf"<!-- recipe:{name} -->\n```\w+\n(.*?)```", DOC.read_text(), flags=re.DOTALL
    )
    assert found, f"docs/consumers.md has no recipe {name!r}"
    return found.group(1)


def _ids(published: Published) -> list[str]:
    return sorted(json.loads((m.value() or b"")[5:])["event_id"] for m in published.events)


def _event_ids_in(text: str) -> list[str]:
    return sorted(json.loads(line)["event_id"] for line in text.splitlines() if line.strip())


def _maven(pom: Path, *goals: str) -> None:
    """Build offline from the local repository when it holds everything; online the first time."""
    base = ["mvn", "-B", "-q", "-f", str(pom), *goals]
    if subprocess.run([*base, "-o"], capture_output=True, check=False).returncode == 0:
        return
    proc = subprocess.run(base, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _classpath(pom: Path, *goals: str) -> str:
    out = pom.parent / "target" / "classpath.txt"
    _maven(pom, *goals, "dependency:build-classpath", f"-Dmdep.outputFile={out}")
    return out.read_text().strip()


@pytest.fixture(scope="module")
def java_recipe() -> list[str]:
    """The command that runs the Java recipe (compiled once per session)."""
    classpath = _classpath(JAVA / "pom.xml", "compile")
    java = shutil.which("java") or "java"
    return [
        java,
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        f"{JAVA / 'target' / 'classes'}:{classpath}",
        "cdrpublisher.CountEvents",
    ]


def _apicurio_v3(registry_url: str) -> str:
    return registry_url.replace("/apis/ccompat/v7", "/apis/registry/v3")


def test_java_apicurio_serde_decodes_every_event(
    published: Published, java_recipe: list[str]
) -> None:
    """Apicurio's JSON Schema deserializer (4-byte content ids, validation on, read_committed)
    decodes every event the daemon published, and Kafka's own murmur2 puts each key in the
    partition it is in."""
    env = published.env
    proc = subprocess.run(
        [*java_recipe, env.bootstrap_servers, _apicurio_v3(env.registry_url), env.events_topic],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    *ids, summary = proc.stdout.splitlines()
    assert summary == f"decoded={len(published.events)} misplaced=0"
    assert sorted(ids) == _ids(published)


def test_java_apicurio_serde_validates(
    bootstrap_servers: str,
    registry_url: str,
    admin: AdminClient,
    unique_name: str,
    java_recipe: list[str],
) -> None:
    """With validation on, the Java recipe refuses a value its registered schema rejects (so
    the previous test's decoding was validated, not merely parsed)."""
    schema_id = ensure_event_schema(
        {"url": registry_url, "timeout": 30}, unique_name, auto_register=True
    )
    cdr = parse_record(json.loads(SAMPLES.read_text())["items"][0])
    assert isinstance(cdr, Cdr)
    source = Source("stream", "2026-11-28T10:00:00.000Z", "2026-11-28T11:00:00.000Z")
    event = build_event(cdr, org_id="o", source=source, replay_id=None)
    good = EventEncoder(schema_id).encode(event)
    # The same frame around an event the schema refuses (a string where an integer belongs).
    bad = good[:5] + orjson.dumps({**event, "cdr": {**event["cdr"], "duration": "zero"}})
    create_topic(admin, unique_name)
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    producer.produce(unique_name, key=b"k", value=bad)
    producer.flush(30)

    proc = subprocess.run(
        [*java_recipe, bootstrap_servers, _apicurio_v3(registry_url), unique_name],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode != 0
    assert "Error validating data against json schema" in proc.stderr
    assert "$.cdr.duration" in proc.stderr


def test_docs_java_settings_are_the_tested_programs() -> None:
    """Every property the docs give for the Java serde is what CountEvents.java sets."""
    source = (JAVA / "src" / "main" / "java" / "cdrpublisher" / "CountEvents.java").read_text()
    for line in _recipe("java-properties").splitlines():
        name, value = line.split("=", 1)
        if name == "apicurio.registry.url":
            assert f'props.put("{name}", args[1])' in source
        elif name == "isolation.level":
            assert 'ISOLATION_LEVEL_CONFIG, "read_committed"' in source
        elif name == "value.deserializer":
            assert value.rsplit(".", 1)[1] + ".class.getName()" in source
        else:
            assert f'props.put("{name}", "{value}")' in source, line


def test_confluent_kafka_python_recipe_decodes_every_event(published: Published) -> None:
    """The docs' confluent-kafka recipe (JSONDeserializer by schema id) prints every event."""
    env = published.env
    proc = subprocess.run(
        [sys.executable, "-c", _recipe("python")],
        env={
            **os.environ,
            "BOOTSTRAP": env.bootstrap_servers,
            "REGISTRY_URL": env.registry_url,
            "TOPIC": env.events_topic,
            "GROUP": f"recipe-{uuid.uuid4().hex[:8]}",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(line.split()[0] for line in proc.stdout.splitlines()) == _ids(published)


def test_kafka_console_consumer_recipe_reads_every_event(published: Published) -> None:
    """Kafka's own console consumer with read_committed, as the docs run it, shows every event."""
    classpath = _classpath(JAVA / "console-consumer" / "pom.xml")
    env = published.env
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", _recipe("console-consumer")],
        env={
            **os.environ,
            "KAFKA_CP": classpath,
            "BOOTSTRAP": env.bootstrap_servers,
            "TOPIC": env.events_topic,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _event_ids_in(proc.stdout) == _ids(published)


def test_kcat_recipe_reads_every_event(published: Published) -> None:
    """kcat with read_committed, as the docs run it, shows every event and stops at the end."""
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed: apt-get install kcat (make test installs it as root)")
    env = published.env
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", _recipe("kcat")],
        env={**os.environ, "BOOTSTRAP": env.bootstrap_servers, "TOPIC": env.events_topic},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _event_ids_in(proc.stdout) == _ids(published)
