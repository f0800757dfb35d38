"""The Helm chart rendered by the real ``helm`` binary (``helm template``, ``helm lint``).

``make test`` (and ``make unit``) install helm as a Go module when it is missing and export its
path as ``HELM``. Without it these tests fail, never skip: a chart that no test renders is a chart
that breaks unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "cdr-publisher"
RELEASE = "rel"


class HelmError(Exception):
    """helm refused the chart or the values (its stderr is the message)."""


def helm_binary() -> str:
    """HELM (set by the Makefile), else helm on PATH, else where `go install` puts it."""
    candidates = [os.environ.get("HELM", ""), shutil.which("helm") or ""]
    gopath = Path(os.environ.get("GOPATH") or Path.home() / "go")
    candidates.append(str(Path(os.environ.get("GOBIN") or gopath / "bin") / "helm"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("helm is not installed: run `make helm` (or `make test`, which installs it)")


def run_helm(*args: str, chart: Path = CHART) -> str:
    result = subprocess.run(
        [helm_binary(), *args, str(chart)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        # No cluster is involved: keep helm away from any kubeconfig of the host.
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if result.returncode != 0:
        raise HelmError(result.stderr.strip())
    return result.stdout


def _values_args(values: dict[str, Any], tmp: Path) -> list[str]:
    if not values:
        return []
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return ["-f", str(path)]


def helm_template(values: dict[str, Any] | None = None, *, tmp: Path) -> list[dict[str, Any]]:
    """The manifests `helm template` renders with ``values`` over the chart's, parsed."""
    out = run_helm("template", RELEASE, *_values_args(values or {}, tmp))
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def helm_lint(values: dict[str, Any] | None = None, *, tmp: Path) -> str:
    return run_helm("lint", "--strict", *_values_args(values or {}, tmp))


def helm_notes(values: dict[str, Any] | None = None, *, tmp: Path) -> str:
    """NOTES.txt as `helm install` would print it (which needs a cluster, even with --dry-run):
    rendered through a probe template in a copy of the chart, since `helm template` skips it."""
    chart = tmp / "chart"
    shutil.copytree(CHART, chart)
    # .Files cannot read templates/, so the probe reads a copy of the notes at the chart's root.
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes-probe.txt")
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\ndata:\n"
        '  notes: {{ tpl (.Files.Get "notes-probe.txt") . | quote }}\n',
        encoding="utf-8",
    )
    out = run_helm(
        "template",
        RELEASE,
        "--show-only",
        "templates/notes-probe.yaml",
        *_values_args(values or {}, tmp),
        chart=chart,
    )
    return str(yaml.safe_load(out)["data"]["notes"])
