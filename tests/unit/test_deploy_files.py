"""The production deployment files under deploy/ are well formed and keep their promises.

No Docker engine or Kubernetes cluster is needed: the Helm chart is rendered by the real ``helm
template`` (tests/unit/helm_chart.py; ``make helm`` installs it), the systemd unit is checked with
``systemd-analyze verify`` where it exists and as INI always, and every setting or metric name a
deployment file mentions is checked against publisher/settings.py and publisher/metrics.py.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from pydantic import SecretStr

from publisher import metrics
from publisher.settings import ENV_PREFIX, Settings, load_settings
from tests.unit.helm_chart import HelmError, helm_notes, helm_template

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "cdr-publisher"
UNIT = DEPLOY / "systemd" / "cdr-publisher.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "cdr-publisher.env.example"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
COMPOSE_REPLICAS = DEPLOY / "compose" / "compose.replicas.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "cdr-publisher-dashboard.json"

SETTING_ENV_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
SECRET_ENV_NAMES = {
    ENV_PREFIX + name.upper()
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation) or field.annotation is SecretStr
}


def render_chart(**overrides: Any) -> list[dict[str, Any]]:
    """The chart's manifests from the real `helm template`, ``overrides`` merged over values.yaml
    the way helm merges a values file (maps deeply, lists replaced)."""
    with tempfile.TemporaryDirectory() as tmp:
        return helm_template(overrides, tmp=Path(tmp))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one Deployment (one replica) or StatefulSet (several) that runs the daemon."""
    found = [doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [doc["kind"] for doc in found]
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(workload(docs)["spec"]["template"]["spec"])


def container_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    return dict(containers[0])


# --- every file parses ---------------------------------------------------------------------------


def _data_files() -> Iterator[Path]:
    for path in sorted(DEPLOY.rglob("*")):
        if "local" in path.relative_to(DEPLOY).parts[:1] or "templates" in path.parts:
            continue
        if path.suffix in (".yaml", ".yml", ".json"):
            yield path


def test_every_yaml_and_json_file_under_deploy_parses() -> None:
    """Each YAML and JSON file under deploy/ (outside the local stack) is valid and not empty."""
    files = list(_data_files())
    assert {p.name for p in files} >= {
        "compose.yaml",
        "Chart.yaml",
        "values.yaml",
        "cdr-publisher-dashboard.json",
    }
    for path in files:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        assert data, f"{path} is empty"


# --- Helm chart -----------------------------------------------------------------------------------


def test_chart_renders_the_expected_manifests_by_default() -> None:
    """Default values give a ServiceAccount, ConfigMap, Service, Deployment, NetworkPolicy and
    the token store's claim, and no Secret (the chart holds no secret value by default)."""
    docs = render_chart()
    assert sorted(doc["kind"] for doc in docs) == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Service",
        "ServiceAccount",
    ]
    names = {doc["metadata"]["name"] for doc in docs}
    assert names == {"rel-cdr-publisher", "rel-cdr-publisher-token"}
    with tempfile.TemporaryDirectory() as tmp:
        notes = helm_notes(tmp=Path(tmp))
    assert "rel-cdr-publisher (one replica, Recreate)" in notes


def test_deployment_runs_one_instance_replaced_with_recreate() -> None:
    """One replica by default: a Deployment (as in earlier charts, so existing releases upgrade in
    place) replaced with Recreate, never two pods at once, and no static group membership (its
    pod names change with every pod)."""
    spec = only(render_chart(), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    env = {e["name"] for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert "CDR_PUBLISHER_GROUP_INSTANCE_ID" not in env


def test_deployment_probes_hit_healthz_and_readyz_on_the_http_port() -> None:
    """Startup and liveness probes ask /healthz, readiness /readyz, on the port the daemon binds."""
    docs = render_chart()
    container = container_of(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9400}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CDR_PUBLISHER_HTTP_HOST"] == "0.0.0.0"
    assert env["CDR_PUBLISHER_HTTP_PORT"] == "9400"
    service = only(docs, "Service")
    assert service["spec"]["ports"][0]["port"] == 9400
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_deployment_is_non_root_with_a_read_only_root_and_no_capabilities() -> None:
    """Pod and container refuse root; root fs read-only; every capability dropped; limits set."""
    docs = render_chart()
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    security = container_of(docs)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container_of(docs)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) >= {"memory"}


def test_settings_come_from_a_config_map_and_an_existing_secret() -> None:
    """envFrom names the chart's ConfigMap and the existing Secret; no secret in the ConfigMap."""
    docs = render_chart(existingSecret="org-a-secrets")
    env_from = container_of(docs)["envFrom"]
    assert {"secretRef": {"name": "org-a-secrets"}} in env_from
    config_map = only(docs, "ConfigMap")
    assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in env_from
    data = config_map["data"]
    assert set(data) <= SETTING_ENV_NAMES, set(data) - SETTING_ENV_NAMES
    assert not set(data) & SECRET_ENV_NAMES
    assert all(isinstance(v, str) for v in data.values())
    env_names = {e["name"] for e in container_of(docs)["env"]}
    assert env_names <= SETTING_ENV_NAMES


def test_chart_refuses_to_render_without_a_secret_name() -> None:
    """An empty existingSecret stops the render with a message naming the value."""
    with pytest.raises(HelmError, match="existingSecret"):
        render_chart(existingSecret="")


def test_config_map_values_are_settings_the_daemon_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chart's default ConfigMap, as environment, builds valid Settings."""
    data = only(render_chart(), "ConfigMap")["data"]
    _clear_settings_env(monkeypatch)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka_bootstrap_servers == data["CDR_PUBLISHER_KAFKA_BOOTSTRAP_SERVERS"]


def test_token_store_can_be_an_empty_dir_mounted_where_the_token_file_points() -> None:
    """With type emptyDir, the refresh-token file lives on an emptyDir mounted at its directory."""
    docs = render_chart(tokenStore={"type": "emptyDir"})
    container = container_of(docs)
    env = {e["name"]: e["value"] for e in container["env"]}
    token_dir = str(Path(env["CDR_PUBLISHER_WEBEX_REFRESH_TOKEN_FILE"]).parent)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert "emptyDir" in volumes[mounts[token_dir]]


def test_token_store_on_a_claim_the_chart_creates_or_an_existing_one() -> None:
    """type pvc renders a PersistentVolumeClaim and mounts it; existingClaim mounts that instead."""
    docs = render_chart(tokenStore={"type": "pvc"})
    claim = only(docs, "PersistentVolumeClaim")
    volumes = pod_spec(docs)["volumes"]
    token = next(v for v in volumes if v["name"] == "token-store")
    assert token["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    docs = render_chart(tokenStore={"type": "pvc", "existingClaim": "kept-token"})
    assert not by_kind(docs, "PersistentVolumeClaim")
    volumes = pod_spec(docs)["volumes"]
    token = next(v for v in volumes if v["name"] == "token-store")
    assert token["persistentVolumeClaim"]["claimName"] == "kept-token"


def test_service_monitor_is_off_by_default_and_scrapes_metrics_when_on() -> None:
    """The ServiceMonitor toggle renders one that selects the Service and scrapes /metrics."""
    assert not by_kind(render_chart(), "ServiceMonitor")
    docs = render_chart(serviceMonitor={"enabled": True, "labels": {"release": "prom"}})
    monitor = only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    service = only(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_changed_config_changes_the_pod_template() -> None:
    """A different ConfigMap changes the pod's checksum annotation, so the pod is replaced."""
    first = workload(render_chart())["spec"]["template"]["metadata"]["annotations"]
    changed = render_chart(config={"CDR_PUBLISHER_ORG_ID": "other"})
    second = workload(changed)["spec"]["template"]["metadata"]["annotations"]
    assert first["checksum/config"] != second["checksum/config"]


# --- systemd ------------------------------------------------------------------------------------


def _parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {number} is not Key=Value: {raw!r}"
        assert current is not None, f"line {number} comes before any [Section]"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_is_hardened_and_restarts_only_when_that_can_help() -> None:
    """Dedicated user, strict sandbox, state dir for the token, no restart on exit 3 (fenced)."""
    unit = _parse_unit(UNIT.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root", "0")
    expected = {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "EnvironmentFile": "/etc/cdr-publisher/cdr-publisher.env",
        "StateDirectory": "cdr-publisher",
        "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert "3" in service["RestartPreventExitStatus"].split()
    assert service["ExecStart"].split()[1:] == ["run"]
    environment = dict(v.split("=", 1) for v in unit["Service"]["Environment"])
    assert set(environment) <= SETTING_ENV_NAMES
    token_file = Path(environment["CDR_PUBLISHER_WEBEX_REFRESH_TOKEN_FILE"])
    assert token_file.parent == Path("/var/lib") / service["StateDirectory"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify reports nothing (the binary path swapped for a stub that exists)."""
    analyze = shutil.which("systemd-analyze")
    text = UNIT.read_text(encoding="utf-8")
    if analyze is None:
        # No systemd here: the INI form must at least hold every directive in a known section.
        sections = _parse_unit(text)
        assert set(sections) == {"Unit", "Service", "Install"}
        assert all(re.fullmatch(r"[A-Z][A-Za-z]+", key) for s in sections.values() for key in s)
        return
    stub = tmp_path / "bin" / "cdr-publisher"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    exec_path = "/opt/cdr-publisher/bin/cdr-publisher"
    assert f"ExecStart={exec_path} run" in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(exec_path, str(stub)), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    about_unit = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if UNIT.name in line or str(tmp_path) in line
    ]
    assert result.returncode == 0, result.stderr
    assert about_unit == []


def _clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _env_lines(text: str) -> Iterator[tuple[bool, str, str]]:
    """(active, name, value) for each assignment, commented out or not."""
    for line in text.splitlines():
        match = re.fullmatch(r"(#?)(CDR_PUBLISHER_[A-Z0-9_]+)=(.*)", line)
        if match:
            value = match.group(3)
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            yield match.group(1) == "", match.group(2), value


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    """Each Settings field appears in the env example, and each name there is a setting."""
    names = {name for _, name, _ in _env_lines(ENV_EXAMPLE.read_text(encoding="utf-8"))}
    assert names - SETTING_ENV_NAMES == set()
    assert SETTING_ENV_NAMES - names == set()


def test_env_example_values_are_accepted_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The active lines together, and each commented example alone, build valid Settings."""
    lines = list(_env_lines(ENV_EXAMPLE.read_text(encoding="utf-8")))
    _clear_settings_env(monkeypatch)
    for active, name, value in lines:
        if active:
            monkeypatch.setenv(name, value)
    base = Settings()
    assert base.deployment_id == "prod"
    for active, name, value in lines:
        if active:
            continue
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            Settings()  # raises ValidationError naming the setting if the example is wrong


# --- compose ------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default}, taking the default (the file must work with nothing set)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_compose_has_the_four_services_with_health_checks_and_ordering() -> None:
    """kafka, registry, simulator and publisher; the publisher waits for the other three healthy."""
    services = _compose()["services"]
    assert set(services) == {"kafka", "registry", "simulator", "publisher"}
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["registry"]["image"] == "apicurio/apicurio-registry:3.3.3"
    for name in ("kafka", "registry", "simulator"):
        assert services[name]["healthcheck"]["test"], name
        assert services["publisher"]["depends_on"][name]["condition"] == "service_healthy"
    assert services["simulator"]["command"][0] == "simulate"
    assert services["publisher"]["command"] == ["run"]
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert "broker" in kafka_env["KAFKA_PROCESS_ROLES"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]


def test_compose_publisher_is_locked_down_like_production() -> None:
    """Read-only root, no capabilities, a volume for the token, listening beyond loopback."""
    publisher = _compose()["services"]["publisher"]
    assert publisher["read_only"] is True
    assert publisher["cap_drop"] == ["ALL"]
    assert publisher["environment"]["CDR_PUBLISHER_HTTP_HOST"] == "0.0.0.0"
    assert any(v.endswith(":/var/lib/cdr-publisher") for v in publisher["volumes"])


def test_compose_publisher_env_is_settings_the_daemon_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publisher variables are settings, build valid Settings, match the simulator's port/token."""
    services = _compose()["services"]
    env = services["publisher"]["environment"]
    assert set(env) <= SETTING_ENV_NAMES, set(env) - SETTING_ENV_NAMES
    _clear_settings_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, _interpolate(str(value)))
    settings = Settings()
    command = [_interpolate(part) for part in services["simulator"]["command"]]
    assert settings.webex_base_url == f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    assert settings.webex_token is not None
    assert settings.webex_token.get_secret_value() == command[command.index("--token") + 1]
    assert settings.schema_registry_url.endswith("/apis/ccompat/v7")


def _replicas() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_REPLICAS.read_text(encoding="utf-8")))


REPLICA_NAMES = ["publisher-0", "publisher-1", "publisher-2"]
PER_REPLICA = {"CDR_PUBLISHER_GROUP_INSTANCE_ID", "CDR_PUBLISHER_HTTP_PORT"}


def test_compose_replicas_are_three_of_one_deployment_differing_only_in_identity() -> None:
    """compose.replicas.yaml: three publishers, the same in everything but their static group
    member id and HTTP port (distinct, and published by the kafka service that owns the shared
    network namespace); compose.yaml's single publisher is moved to a profile."""
    services = _replicas()["services"]
    assert [name for name in services if name.startswith("publisher-")] == REPLICA_NAMES
    replicas = [services[name] for name in REPLICA_NAMES]

    def shared(service: dict[str, Any]) -> dict[str, Any]:
        env = {k: v for k, v in service["environment"].items() if k not in PER_REPLICA}
        return {**service, "environment": env}

    assert shared(replicas[0]) == shared(replicas[1]) == shared(replicas[2])
    for name in PER_REPLICA:
        values = [service["environment"][name] for service in replicas]
        assert len(set(values)) == 3, name
    ports = {int(service["environment"]["CDR_PUBLISHER_HTTP_PORT"]) for service in replicas}
    published = _compose()["services"]["kafka"]["ports"] + services["kafka"]["ports"]
    assert ports <= {int(port.rsplit(":", 1)[1]) for port in published}
    assert services["publisher"] == {"profiles": ["single"]}
    for service in replicas:
        assert service["network_mode"] == "service:kafka"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        for name in ("kafka", "registry", "simulator"):
            assert service["depends_on"][name]["condition"] == "service_healthy"


def test_compose_replicas_share_the_catalogue_the_simulator_writes() -> None:
    """The replicas run `run --config` with the orgs.toml that the simulator's --write-orgs puts
    in the volume they all mount, with the simulator's token files beside it."""
    services = _replicas()["services"]
    simulator = services["simulator"]
    command = [_interpolate(part) for part in simulator["command"]]
    assert int(command[command.index("--orgs") + 1]) == 3
    written = Path(command[command.index("--write-orgs") + 1])
    assert "orgs.toml" in " ".join(simulator["healthcheck"]["test"])
    for name in REPLICA_NAMES:
        service = services[name]
        assert service["command"][:2] == ["run", "--config"]
        assert Path(service["command"][2]) == written / "orgs.toml"
        (volume,) = service["volumes"]
        assert volume in simulator["volumes"]
        assert written.is_relative_to(volume.split(":")[1])
    assert set(_replicas()["volumes"]) >= {v.split(":")[0] for v in simulator["volumes"]}


def test_compose_replica_env_and_a_catalogue_build_valid_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each replica's variables are settings; with a catalogue like the simulator's they build
    valid Settings (no single-org setting to clash with [[orgs]]), in the group, with their id."""
    services = _replicas()["services"]
    catalogue = tmp_path / "orgs.toml"
    catalogue.write_text(
        '[[orgs]]\nid = "org-1"\ntoken_file = "/var/lib/cdr-publisher/catalogue/org-1.token"\n',
        encoding="utf-8",
    )
    _clear_settings_env(monkeypatch)
    for name in REPLICA_NAMES:
        env = services[name]["environment"]
        assert set(env) <= SETTING_ENV_NAMES, set(env) - SETTING_ENV_NAMES
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, _interpolate(str(value)))
            settings = load_settings(catalogue)
        assert settings.coordination == "group"
        assert settings.group_instance_id == name
        assert [org.id for org in settings.orgs] == ["org-1"]
        assert settings.state_partitions >= len(REPLICA_NAMES)
        assert settings.admin_token is None


# --- Dockerfile ---------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_is_multi_stage_non_root_and_starts_the_daemon() -> None:
    """Two or more stages, a non-root USER, port 9400, and `cdr-publisher run` as the command."""
    instructions = _instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    assert args[users[-1].split(":")[0].strip("${}")] != "0"
    last = dict(instructions)  # the last of each instruction wins, as in Docker
    assert last["EXPOSE"] == "9400"
    assert json.loads(last["ENTRYPOINT"]) == ["cdr-publisher"]
    assert json.loads(last["CMD"]) == ["run"]
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "CDR_PUBLISHER_HTTP_HOST=0.0.0.0" in env
    assert set(re.findall(r"CDR_PUBLISHER_[A-Z0-9_]+", env)) <= SETTING_ENV_NAMES


def _healthcheck_code() -> str:
    rest = dict(_instructions())["HEALTHCHECK"]
    command = json.loads(rest[rest.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    ast.parse(command[2])
    return str(command[2])


class _StatusServer:
    """A loopback HTTP server answering every GET with a fixed status."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return int(self.server.server_address[1])

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_dockerfile_healthcheck_follows_healthz(status: int, healthy: bool) -> None:
    """The HEALTHCHECK command exits 0 on a 200 from /healthz and non-zero on a 503."""
    code = _healthcheck_code()
    with _StatusServer(status) as port:
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            check=False,
            timeout=30,
            env={**os.environ, "CDR_PUBLISHER_HTTP_PORT": str(port)},
        )
    assert (result.returncode == 0) is healthy


# --- Grafana --------------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Sample names /metrics serves, with a child of every labelled metric made and then removed."""
    touched: list[tuple[MetricWrapperBase, tuple[str, ...]]] = []
    try:
        for metric in vars(metrics).values():
            if isinstance(metric, MetricWrapperBase) and metric._labelnames:
                values = tuple("deploy-test" for _ in metric._labelnames)
                metric.labels(*values)
                touched.append((metric, values))
        text = generate_latest(metrics.REGISTRY).decode()
    finally:
        for metric, values in touched:
            metric.remove(*values)
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    templating = dashboard["templating"]["list"]
    exprs += [v["definition"] for v in templating if "definition" in v]
    return exprs


def test_dashboard_queries_only_metrics_the_daemon_exports() -> None:
    """Every cdr_publisher_* name in the dashboard's PromQL is a sample /metrics serves."""
    exported = exported_metric_names()
    assert "cdr_publisher_records_published_total" in exported
    assert "cdr_publisher_transaction_commit_seconds_bucket" in exported
    used = {name for expr in _queries() for name in re.findall(r"cdr_publisher_[a-z_]+", expr)}
    assert used - exported == set()


def test_dashboard_graphs_every_metric_family() -> None:
    """No metric in publisher/metrics.py is left off the dashboard."""
    used = " ".join(_queries())
    families = {
        metric.describe()[0].name
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    assert families
    assert {family for family in families if family not in used} == set()


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    """Panel ids are unique and no two panels share a grid cell."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, panel["title"]
        cells |= area
