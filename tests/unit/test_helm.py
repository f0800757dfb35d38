"""The Helm chart with several replicas and an org catalogue, checked with the real helm: `helm
lint` passes for each values set, `helm template` renders the promised manifests, and the
combinations that cannot work stop the render with a message naming the value to change."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from publisher.settings import load_settings
from tests.unit.helm_chart import HelmError, helm_binary, helm_lint, helm_notes, helm_template
from tests.unit.test_deploy_files import (
    SECRET_ENV_NAMES,
    SETTING_ENV_NAMES,
    _clear_settings_env,
    by_kind,
    container_of,
    only,
    pod_spec,
    workload,
)

CREDENTIALS = "/etc/cdr-publisher/credentials"
STORE = "/var/lib/cdr-publisher"

# Three replicas serving a catalogue of one org of each credential kind, on a shared RWX claim.
FLEET: dict[str, Any] = {
    "replicaCount": 3,
    "tokenStore": {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs"},
    "credentials": {"existingSecret": "fleet-credentials"},
    "orgs": [
        {
            "id": "a1b2c3d4-0000-4000-8000-00000000000a",
            "name": "Acme",
            "token_file": f"{CREDENTIALS}/acme.token",
            "locations": ["Site A", "Site B"],
        },
        {
            "id": "5e6f0000-0000-4000-8000-00000000000b",
            "client_id": "C0ffee",
            "client_secret_file": f"{CREDENTIALS}/integration-secret",
            "refresh_token_file": f"{STORE}/globex.refresh",
        },
        {"id": "9a8b0000-0000-4000-8000-00000000000c", "service_app": True},
    ],
    "serviceApp": {
        "application_id": "Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OLy4uLg",
        "client_id": "C1a2b3",
        "client_secret_file": f"{CREDENTIALS}/service-app-secret",
        "applications_token_file": f"{CREDENTIALS}/applications-token",
        "token_store_dir": f"{STORE}/service-app",
    },
    "serviceMonitor": {"enabled": True},
    "adminToken": {"existingSecret": "fleet-admin"},
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fleet": FLEET,
    # One org, standbys for failover, on an RWX claim the operator made.
    "single-org-ha": {
        "replicaCount": 2,
        "tokenStore": {"existingClaim": "shared-token", "accessModes": ["ReadWriteMany"]},
    },
    # Static tokens only: nothing to keep, no claim at all.
    "static-tokens": {
        "replicaCount": 12,
        "tokenStore": {"enabled": False},
        "credentials": {"existingSecret": "tokens"},
        "orgs": [{"id": f"org-{n}", "token_file": f"{CREDENTIALS}/org-{n}"} for n in range(30)],
    },
}


def _with(**changes: Any) -> dict[str, Any]:
    values = dict(FLEET)
    values.update(changes)
    return values


def test_helm_is_found_or_the_failure_says_make_helm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The tests run the binary `make helm` installs; without one they fail naming that target."""
    assert Path(helm_binary()).is_file()
    monkeypatch.setenv("HELM", str(tmp_path / "missing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("GOPATH", str(tmp_path))
    monkeypatch.delenv("GOBIN", raising=False)
    with pytest.raises(pytest.fail.Exception, match="make helm"):
        helm_binary()


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_passes(name: str, tmp_path: Path) -> None:
    """`helm lint --strict` finds nothing wrong with the chart under each values set."""
    out = helm_lint(VALUE_SETS[name], tmp=tmp_path)
    assert "0 chart(s) failed" in out


def test_one_replica_is_a_deployment_with_no_budget_and_no_headless_service(
    tmp_path: Path,
) -> None:
    """The default: the Deployment of earlier charts; StatefulSet, PDB, headless Service absent."""
    docs = helm_template(tmp=tmp_path)
    assert workload(docs)["kind"] == "Deployment"
    assert not by_kind(docs, "StatefulSet")
    assert not by_kind(docs, "PodDisruptionBudget")
    assert [s["metadata"]["name"] for s in by_kind(docs, "Service")] == ["rel-cdr-publisher"]
    assert container_of(docs)["args"] == ["run"]


def test_several_replicas_are_a_statefulset_named_in_the_group(tmp_path: Path) -> None:
    """replicaCount 3: a StatefulSet of 3 whose pods' names are their group.instance.id, started
    in parallel, updated one at a time, governed by a headless Service, spread across nodes."""
    docs = helm_template(FLEET, tmp=tmp_path)
    assert not by_kind(docs, "Deployment")
    sts = only(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert "volumeClaimTemplates" not in spec  # one shared claim, not one per replica
    env = {e["name"]: e for e in container_of(docs)["env"]}
    assert env["CDR_PUBLISHER_GROUP_INSTANCE_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    headless = next(s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None")
    assert spec["serviceName"] == headless["metadata"]["name"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    anti = pod_spec(docs)["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()


def test_several_replicas_get_a_disruption_budget_of_one(tmp_path: Path) -> None:
    """A PodDisruptionBudget selecting the replicas, maxUnavailable 1, unready pods evictable."""
    docs = helm_template(FLEET, tmp=tmp_path)
    budget = only(docs, "PodDisruptionBudget")
    pod_labels = only(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_replicas_share_one_read_write_many_token_claim(tmp_path: Path) -> None:
    """Every replica mounts the one claim the chart creates, ReadWriteMany, where the org's
    refresh_token_file and the Service App's token_store_dir live."""
    docs = helm_template(FLEET, tmp=tmp_path)
    claim = only(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "nfs"
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["token-store"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m for m in container_of(docs)["volumeMounts"]}
    assert mounts["token-store"]["mountPath"] == STORE
    assert not mounts["token-store"].get("readOnly")


def test_the_catalogue_is_a_config_map_the_daemon_reads_with_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orgs and serviceApp become orgs.toml in a ConfigMap, mounted read-only where `run --config`
    looks; the file with the chart's environment builds valid Settings holding the catalogue."""
    docs = helm_template(FLEET, tmp=tmp_path)
    catalogue = next(c for c in by_kind(docs, "ConfigMap") if "orgs.toml" in c["data"])
    container = container_of(docs)
    assert container["args"][:2] == ["run", "--config"]
    config_path = Path(container["args"][2])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["catalogue"]["configMap"]["name"] == catalogue["metadata"]["name"]
    assert mounts["catalogue"] == {
        "name": "catalogue",
        "mountPath": str(config_path.parent),
        "readOnly": True,
    }
    text = catalogue["data"][config_path.name]
    parsed = tomllib.loads(text)
    assert parsed == {"orgs": FLEET["orgs"], "service_app": FLEET["serviceApp"]}

    config = next(c for c in by_kind(docs, "ConfigMap") if c is not catalogue)["data"]
    _clear_settings_env(monkeypatch)
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    for entry in container["env"]:
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
    monkeypatch.setenv("CDR_PUBLISHER_GROUP_INSTANCE_ID", "rel-cdr-publisher-0")
    (tmp_path / "orgs.toml").write_text(text, encoding="utf-8")
    settings = load_settings(tmp_path / "orgs.toml")
    assert [org.id for org in settings.orgs] == [org["id"] for org in FLEET["orgs"]]
    assert settings.service_app is not None
    assert settings.group_instance_id == "rel-cdr-publisher-0"
    assert settings.coordination == "group"
    # The single org's refresh-token setting would clash with the catalogue: not rendered.
    assert "CDR_PUBLISHER_WEBEX_REFRESH_TOKEN_FILE" not in {e["name"] for e in container["env"]}


def test_credential_files_come_from_the_named_secret_mounted_whole(tmp_path: Path) -> None:
    """credentials.existingSecret is mounted read-only at credentials.mountPath (no subPath, so a
    Secret update reaches the files), group-readable only; no secret in any ConfigMap."""
    docs = helm_template(FLEET, tmp=tmp_path)
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["credentials"]["secret"] == {
        "secretName": "fleet-credentials",
        "defaultMode": 0o440,
    }
    mount = next(m for m in container_of(docs)["volumeMounts"] if m["name"] == "credentials")
    assert mount == {"name": "credentials", "mountPath": CREDENTIALS, "readOnly": True}
    for config_map in by_kind(docs, "ConfigMap"):
        assert not set(config_map["data"]) & SECRET_ENV_NAMES
        assert set(config_map["data"]) <= SETTING_ENV_NAMES | {"orgs.toml"}


def test_network_policy_admin_token_and_service_monitor_hold_with_replicas(
    tmp_path: Path,
) -> None:
    """With a StatefulSet: the NetworkPolicy selects its pods, the admin token still comes from
    its Secret, and the ServiceMonitor selects only the Service that carries /metrics (the
    headless one would have every replica scraped twice)."""
    docs = helm_template(FLEET, tmp=tmp_path)
    pod_labels = only(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    policy = only(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    env = {e["name"]: e for e in container_of(docs)["env"]}
    assert env["CDR_PUBLISHER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "fleet-admin"
    selector = only(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    scraped = [
        s["metadata"]["name"]
        for s in by_kind(docs, "Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert scraped == ["rel-cdr-publisher"]


def test_a_changed_catalogue_replaces_the_pods(tmp_path: Path) -> None:
    """The catalogue is read once at start: another org changes the pod template's checksum."""
    first = helm_template(FLEET, tmp=tmp_path)
    more = [*FLEET["orgs"], {"id": "new-org", "token_file": f"{CREDENTIALS}/new.token"}]
    second = helm_template(_with(orgs=more), tmp=tmp_path)

    def checksum(docs: list[dict[str, Any]]) -> str:
        return str(workload(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum(first) != checksum(second)


def test_replicas_may_reach_the_slot_count_and_follow_it(tmp_path: Path) -> None:
    """As many replicas as state partitions render; a larger STATE_PARTITIONS allows more."""
    static = VALUE_SETS["static-tokens"]
    assert only(helm_template(static, tmp=tmp_path), "StatefulSet")["spec"]["replicas"] == 12
    wider = {**static, "replicaCount": 20, "config": {"CDR_PUBLISHER_STATE_PARTITIONS": "24"}}
    assert only(helm_template(wider, tmp=tmp_path), "StatefulSet")["spec"]["replicas"] == 20


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "more replicas than slots": (
        {**VALUE_SETS["static-tokens"], "replicaCount": 13},
        r"replicaCount 13 exceeds the 12 state partitions \(config.CDR_PUBLISHER_STATE_PART",
    ),
    "several replicas on a ReadWriteOnce claim": (
        _with(tokenStore={"accessModes": ["ReadWriteOnce"]}),
        (
            r"replicaCount 3 with a ReadWriteOnce token store claim: every replica must mount "
            r"the one claim holding the rotated refresh tokens"
        ),
    ),
    "the default claim with --set replicaCount=3": (
        {"replicaCount": 3},
        r"replicaCount 3 with a ReadWriteOnce token store claim",
    ),
    "several replicas, refresh tokens on emptyDirs": (
        _with(tokenStore={"type": "emptyDir"}),
        (
            r"replicaCount 3 with an emptyDir token store while orgs\[1\].refresh_token_file keeps "
            r"rotated refresh tokens"
        ),
    ),
    "several replicas without the group": (
        _with(config={"CDR_PUBLISHER_COORDINATION": "none"}),
        r"CDR_PUBLISHER_COORDINATION=none: each replica would own every slot",
    ),
    "a token in the values": (
        _with(orgs=[{"id": "x", "token": "abc"}]),
        r"orgs\[0\].token: no secret values in the chart's values",
    ),
    "a client secret in the values": (
        _with(serviceApp={**FLEET["serviceApp"], "client_secret": "abc"}),
        r"serviceApp.client_secret: no secret values",
    ),
    "a token file outside the Secret's mount": (
        _with(orgs=[{"id": "x", "token_file": "/srv/x.token"}]),
        r"orgs\[0\].token_file /srv/x.token: not in the pod",
    ),
    "a refresh token file off the token store": (
        _with(
            orgs=[
                {
                    "id": "x",
                    "client_id": "c",
                    "client_secret_file": f"{CREDENTIALS}/s",
                    "refresh_token_file": f"{CREDENTIALS}/x.refresh",
                }
            ]
        ),
        (
            r"orgs\[0\].refresh_token_file /etc/cdr-publisher/credentials/x.refresh: the daemon "
            r"writes the rotated refresh token there, so it must be on the token store"
        ),
    ),
    "a first refresh token file outside the credentials Secret": (
        _with(
            orgs=[
                {
                    "id": "x",
                    "client_id": "c",
                    "client_secret_file": f"{CREDENTIALS}/s",
                    "refresh_token_file": f"{STORE}/x.refresh",
                    "first_refresh_token_file": "/srv/x.first",
                }
            ]
        ),
        r"orgs\[0\].first_refresh_token_file /srv/x.first: not in the pod",
    ),
    "a catalogue and a single org id": (
        _with(config={"CDR_PUBLISHER_ORG_ID": "org-a"}),
        r"orgs and config.CDR_PUBLISHER_ORG_ID=org-a are both set",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_impossible_combinations_stop_the_render(case: str, tmp_path: Path) -> None:
    """Each combination that cannot work fails `helm template` with a message naming it."""
    values, message = REFUSED[case]
    with pytest.raises(HelmError, match=message):
        helm_template(values, tmp=tmp_path)


def test_notes_say_how_the_release_runs(tmp_path: Path) -> None:
    """NOTES name the StatefulSet, its replicas and the session timeout, or the single replica."""
    fleet = helm_notes(FLEET, tmp=tmp_path / "fleet")
    assert "StatefulSet rel-cdr-publisher: 3 replicas" in fleet
    assert "consumer group cdr-publisher.prod" in fleet
    assert "(30 s)" in fleet
    assert "catalogue of 3 orgs" in fleet
    assert "kubectl exec rel-cdr-publisher-0 -- cdr-publisher config --config" in fleet
    single = helm_notes(tmp=tmp_path / "single")
    assert "(one replica, Recreate)" in single
    assert "kubectl exec deploy/rel-cdr-publisher -- cdr-publisher config\n" in single
