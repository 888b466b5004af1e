"""Helpers every tier shares: where the upstream CRDs are, and a ModelDeployment factory."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def upstream_crds_dir() -> Path:
    """KServe v0.20.0 and Gateway API v1.6.1 CRDs (see ../shared/crds/README.md)."""
    path = Path(os.environ.get("MLSD_UPSTREAM_CRDS", REPO.parent / "shared" / "crds"))
    if not (path / "kserve").is_dir() or not (path / "gateway-api").is_dir():
        pytest.fail(f"upstream CRDs not found at {path}: set MLSD_UPSTREAM_CRDS to a folder holding "
                    "kserve/ (KServe v0.20.0 config/crd/full) and gateway-api/ (Gateway API v1.6.1 standard)")
    return path


KEDA_MODULE = "github.com/kedacore/keda/v2@v2.21.0"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator@v0.90.1"


def go_module_dir(module: str) -> Path:
    """A module's source tree (`path@version`), from the Go module proxy via Go's module cache."""
    import json
    import shutil
    import subprocess

    if shutil.which("go") is None:
        pytest.fail(f"go not found: {module} comes from the Go module proxy; install Go 1.26 (see README)")
    result = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "GOFLAGS": "-mod=mod"}, cwd="/")
    if result.returncode != 0:
        pytest.fail(f"go mod download {module} failed: {result.stdout[-1000:]}{result.stderr[-1000:]}")
    return Path(json.loads(result.stdout)["Dir"])


def keda_crds_dir() -> Path:
    """KEDA v2.21.0's own CRDs (config/crd/bases)."""
    return go_module_dir(KEDA_MODULE) / "config" / "crd" / "bases"


def prometheus_operator_crds_dir() -> Path:
    """prometheus-operator v0.90.1's CRDs (PodMonitor, ServiceMonitor, PrometheusRule, ...)."""
    return go_module_dir(PROMETHEUS_OPERATOR_MODULE) / "example" / "prometheus-operator-crd"


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def manifest(name: str = "demo", namespace: str | None = "team-a", uid: str | None = None,
             **spec: Any) -> dict[str, Any]:
    """A valid ModelDeployment manifest; keyword arguments deep-merge into spec (None removes a key)."""
    base_spec = {
        "caseStudy": "ad-click-prediction",
        "runtime": "kserve",
        "model": {"version": "1", "storageUri": "pvc://models/ad-click-prediction/1", "precision": "fp32"},
    }
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if uid:
        meta["uid"] = uid
    return {"apiVersion": "mlsd.io/v1alpha1", "kind": "ModelDeployment", "metadata": meta,
            "spec": _merge(base_spec, spec)}


def canary(version: str = "2", **overrides: Any) -> dict[str, Any]:
    return _merge({"model": {"version": version, "storageUri": f"pvc://models/ad-click-prediction/{version}"},
                   "steps": [10, 50]}, overrides)
