from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from publisher.errors import StackError
from tests.integration.cluster import Cluster, cluster

_USED: list[Cluster] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for found in _USED:
        terminalreporter.write_line(
            f"integration tests ran against ({found.origin}): kafka {found.bootstrap_servers}, "
            f"registry {found.registry_url}"
        )


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Cluster]:
    """A real broker and registry for the session; fails (never skips) when none can be had."""
    try:
        with cluster() as found:
            print(
                f"\nintegration cluster ({found.origin}): kafka {found.bootstrap_servers}, "
                f"registry {found.registry_url}"
            )
            yield found
    except StackError as exc:
        pytest.fail(f"no Kafka broker / Schema Registry for the integration tests: {exc}")


@pytest.fixture(scope="session")
def bootstrap_servers(kafka_cluster: Cluster) -> str:
    return kafka_cluster.bootstrap_servers


@pytest.fixture(scope="session")
def registry_url(kafka_cluster: Cluster) -> str:
    return kafka_cluster.registry_url


@pytest.fixture(scope="session")
def admin(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers})


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/subject name no other test uses, so tests never see each other's data."""
    return f"t.{request.node.name[:40]}.{uuid.uuid4().hex[:8]}".replace("[", ".").replace("]", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
