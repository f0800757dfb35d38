"""The deployment files' security promises: the Helm chart limits who reaches the HTTP port,
takes the admin token from a Secret, keeps the rotated refresh token on a volume that survives the
pod; compose leaves the admin routes off unless a token is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from publisher.settings import Settings
from tests.unit.test_deploy_files import (
    _clear_settings_env,
    _compose,
    _interpolate,
    by_kind,
    container_of,
    only,
    render_chart,
)


def _env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container_of(docs)["env"]}


def test_a_network_policy_admits_only_the_metrics_scraper_to_the_http_port_by_default() -> None:
    """By default a NetworkPolicy selects the pod and lets only the monitoring namespace reach
    port http; no other port and no other peer."""
    docs = render_chart()
    policy = only(docs, "NetworkPolicy")
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]

    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_the_network_policy_adds_admin_clients_and_never_renders_an_open_from() -> None:
    """adminFrom peers are added to the rule; with no peer at all the policy denies every
    ingress (an empty `from` would admit everyone, so it is never rendered)."""
    ops = {"podSelector": {"matchLabels": {"role": "cdr-ops"}}}
    with_ops = only(render_chart(networkPolicy={"adminFrom": [ops]}), "NetworkPolicy")
    assert ops in with_ops["spec"]["ingress"][0]["from"]

    closed = only(render_chart(networkPolicy={"metricsFrom": [], "adminFrom": []}), "NetworkPolicy")
    assert closed["spec"]["ingress"] == []
    assert not by_kind(render_chart(networkPolicy={"enabled": False}), "NetworkPolicy")


def test_the_admin_token_comes_from_an_existing_secret() -> None:
    """adminToken.existingSecret: CDR_PUBLISHER_ADMIN_TOKEN is read from that Secret's key; the
    chart creates no Secret and puts no token anywhere."""
    docs = render_chart(adminToken={"existingSecret": "org-a-admin", "key": "token"})
    ref = _env(docs)["CDR_PUBLISHER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]

    assert ref == {"name": "org-a-admin", "key": "token"}
    assert not by_kind(docs, "Secret")


def test_the_admin_token_given_as_a_value_goes_into_a_secret_the_chart_creates() -> None:
    """adminToken.value: the chart keeps it in its own Secret and the env refers to that; the
    token is in no ConfigMap and no env value."""
    token = "chart-admin-token-0123456789"
    docs = render_chart(adminToken={"value": token})
    secret = only(docs, "Secret")
    ref = _env(docs)["CDR_PUBLISHER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]

    assert ref == {"name": secret["metadata"]["name"], "key": "admin-token"}
    assert secret["stringData"] == {"admin-token": token}
    assert token not in str(only(docs, "ConfigMap"))
    assert token not in [e.get("value") for e in container_of(docs)["env"]]


def test_without_an_admin_token_the_admin_routes_stay_disabled() -> None:
    """No existingSecret and no value: no CDR_PUBLISHER_ADMIN_TOKEN at all (routes disabled)."""
    docs = render_chart()
    assert "CDR_PUBLISHER_ADMIN_TOKEN" not in _env(docs)
    assert not by_kind(docs, "Secret")


def test_the_token_store_is_a_persistent_volume_claim_by_default() -> None:
    """The rotated refresh token lives on a PersistentVolumeClaim by default (an emptyDir would
    lose it whenever the pod is replaced), mounted at the directory the token file names."""
    docs = render_chart()
    claim = only(docs, "PersistentVolumeClaim")
    container = container_of(docs)
    token_file = Path(_env(docs)["CDR_PUBLISHER_WEBEX_REFRESH_TOKEN_FILE"]["value"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {
        v["name"]: v for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }

    volume = volumes[mounts[str(token_file.parent)]]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "emptyDir" not in volume
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_compose_leaves_admin_routes_off_unless_a_token_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Compose passes CDR_PUBLISHER_ADMIN_TOKEN through from the shell; left unset (empty), the
    settings read it as no token, so the admin routes are off."""
    env = _compose()["services"]["publisher"]["environment"]
    assert env["CDR_PUBLISHER_ADMIN_TOKEN"] == "${CDR_PUBLISHER_ADMIN_TOKEN:-}"
    _clear_settings_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, _interpolate(str(value)))
    assert Settings().admin_token is None
