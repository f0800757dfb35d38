"""Where the integration tests find a real Kafka broker and Schema Registry.

In this order: an existing cluster named by ``KAFKA_BOOTSTRAP_SERVERS`` and ``SCHEMA_REGISTRY_URL``;
testcontainers when a Docker engine answers; otherwise the project's local stack (Kafka from Maven
Central in KRaft mode and Apicurio Registry), started here if it is not running. There is no
fourth option: when none works the session fails with the reason, it never skips.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Cluster:
    bootstrap_servers: str
    registry_url: str
    origin: str


USED_CLUSTERS: list[Cluster] = []
"""The clusters this session's integration tests used (printed in the terminal summary)."""


def _docker_answers() -> bool:
    """True when a Docker engine answers a ping on its socket (checked without the docker SDK,
    whose failed pings leak sockets and would fail a warnings-as-errors run)."""
    if os.environ.get("CDR_TEST_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine was named on purpose: let testcontainers use it
    path = host.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200" in status_line


@contextmanager
def _containers() -> Iterator[Cluster]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    kafka = (
        KafkaContainer()
        .with_kraft()
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    registry = DockerContainer("apicurio/apicurio-registry:3.3.3").with_exposed_ports(8080)
    with kafka, registry:
        wait_for_logs(registry, "Listening on", timeout=120)
        url = (
            f"http://{registry.get_container_host_ip()}:"
            f"{registry.get_exposed_port(8080)}/apis/ccompat/v7"
        )
        yield Cluster(kafka.get_bootstrap_server(), url, "testcontainers")


@contextmanager
def _local_stack() -> Iterator[Cluster]:
    from publisher import stack

    config = stack.StackConfig.from_env()
    was_running = set(stack.running(config))
    addrs = stack.up(config)
    try:
        yield Cluster(addrs["kafka"], addrs["registry"], "local stack")
    finally:
        # Leave a stack the developer started running; stop only what this session started.
        if not was_running:
            stack.down(config)


@contextmanager
def cluster() -> Iterator[Cluster]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    registry = os.environ.get("SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        yield Cluster(bootstrap, registry, "environment")
    elif _docker_answers():
        with _containers() as found:
            yield found
    else:
        with _local_stack() as found:
            yield found
