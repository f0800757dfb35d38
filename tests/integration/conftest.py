from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from publisher.errors import StackError
from tests.integration.cluster import USED_CLUSTERS, Cluster, cluster
from tests.integration.published import Published


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Cluster]:
    """A real broker and registry for the session; fails (never skips) when none can be had."""
    try:
        with cluster() as found:
            USED_CLUSTERS.append(found)  # for the session summary in tests/conftest.py
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


LOG_TAIL_BYTES = 6000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None] | pytest.TestReport:
    """A failing test shows the end of every log its daemons wrote under its tmp_path: a CI
    failure such as a daemon that exited mid-test must explain itself from the CI output alone."""
    report: pytest.TestReport = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and tmp_path is not None:
        for log in sorted(Path(tmp_path).rglob("*.log")):
            data = log.read_bytes()[-LOG_TAIL_BYTES:]
            report.sections.append((f"tail of {log.name}", data.decode("utf-8", "replace")))
    return report


@pytest.fixture(scope="session")
def private_kafka(
    kafka_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateKafka]:
    """A second, private one-node broker (sharing the stack's downloads) that a test may stop
    and start without disturbing the tests that use the shared one."""
    from publisher import stack

    base = stack.StackConfig.from_env()
    config = stack.StackConfig(
        home=base.home,
        kafka_port=_free_port(),
        controller_port=_free_port(),
        state_dir=tmp_path_factory.mktemp("private-kafka"),
    )
    try:
        stack.up(config, services=("kafka",))
        yield PrivateKafka(config)
    finally:
        stack.down(config, services=("kafka",))


class PrivateKafka:
    def __init__(self, config: object) -> None:
        from publisher import stack

        assert isinstance(config, stack.StackConfig)
        self.config = config

    @property
    def bootstrap_servers(self) -> str:
        return self.config.bootstrap_servers

    def stop(self) -> None:
        from publisher import stack

        stack.down(self.config, services=("kafka",))

    def start(self) -> None:
        from publisher import stack

        stack.up(self.config, services=("kafka",))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def published(
    bootstrap_servers: str, registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """A topic the real daemon published once for the session (see tests/integration/published)."""
    from tests.integration.published import publish_once

    log = tmp_path_factory.mktemp("published") / "daemon.log"
    return publish_once(bootstrap_servers, registry_url, f"t.published.{uuid.uuid4().hex[:8]}", log)
