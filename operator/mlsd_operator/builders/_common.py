"""What every child shares: names, labels, owner references, placement and resources."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import mlsd_contract as contract
from mlsd_contract.api import (
    API_VERSION, KIND, Accelerator, ModelDeployment, ModelRef, Runtime,
)

from ._config import RenderConfig

MANAGED_BY = "mlsd-operator"
LABEL_CASE_STUDY = "mlsd.io/case-study"
LABEL_TRACK = "mlsd.io/track"
LABEL_VERSION = "mlsd.io/version"
LABEL_DEPLOYMENT = "mlsd.io/model-deployment"
ANNOTATION_PLACEMENT = "mlsd.io/placement-reason"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


class UnsupportedSpec(ValueError):
    """A spec the schema accepts but no cluster can run; the operator reports it as Failed."""


@dataclass(frozen=True)
class Decision:
    gpu: bool
    reason: str


def decide_accelerator(mdep: ModelDeployment) -> Decision:
    placement = mdep.spec.placement
    case = mdep.spec.case_study
    if placement.accelerator == Accelerator.CPU:
        return Decision(False, "accelerator: cpu requested")
    if placement.accelerator == Accelerator.GPU:
        return Decision(True, "accelerator: gpu requested")
    traits = contract.TRAITS[case]
    if traits.prefers == "cpu":
        return Decision(False, f"auto -> cpu: {traits.why}")
    if placement.gpu is None:
        return Decision(False, f"auto -> cpu: {case.value} prefers a GPU ({traits.why}), "
                               "but no placement.gpu was given")
    return Decision(True, f"auto -> gpu: {traits.why}")


def dns_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-1035 label from parts; long names keep a hash suffix so they stay unique."""
    raw = "-".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "m-" + name
    if len(name) > max_length:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = name[: max_length - 9].rstrip("-") + "-" + digest
    return name


def version_name(mdep: ModelDeployment, version: str) -> str:
    """Children of one model version are named after it, so promotion renames nothing."""
    return dns_name(mdep.metadata.name, "v" + version)


def labels(mdep: ModelDeployment, *, component: str, version: str | None = None,
           track: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": f"mlsd-{mdep.spec.case_study.value}",
        "app.kubernetes.io/instance": mdep.metadata.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "mlsd-serving",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_DEPLOYMENT: mdep.metadata.name,
        LABEL_CASE_STUDY: mdep.spec.case_study.value,
    }
    if version is not None:
        out["app.kubernetes.io/version"] = version      # the API's version pattern is label-safe
        out[LABEL_VERSION] = version
    if track is not None:
        out[LABEL_TRACK] = track
    return out


def pod_selector(mdep: ModelDeployment, version: str) -> dict[str, str]:
    """Immutable selector of one version's pods; tracks are not in it (a promotion relabels no pod)."""
    return {LABEL_DEPLOYMENT: mdep.metadata.name, LABEL_VERSION: version}


def owner_references(mdep: ModelDeployment) -> list[dict[str, Any]]:
    if not mdep.metadata.uid:
        return []
    return [{
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": mdep.metadata.name,
        "uid": mdep.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }]


def metadata(mdep: ModelDeployment, name: str, object_labels: dict[str, str],
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if mdep.metadata.namespace:      # absent in a file rendered for `kubectl apply -n`
        meta["namespace"] = mdep.metadata.namespace
    meta["labels"] = object_labels
    if annotations:
        meta["annotations"] = annotations
    owners = owner_references(mdep)
    if owners:
        meta["ownerReferences"] = owners
    return meta


@dataclass(frozen=True)
class PodPlacement:
    resources: dict[str, dict[str, str]]
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    gpu: bool
    reason: str


def placement(mdep: ModelDeployment, config: RenderConfig) -> PodPlacement:
    spec = mdep.spec.placement
    decision = decide_accelerator(mdep)
    traits = contract.TRAITS[mdep.spec.case_study]
    resources = {"requests": {"cpu": traits.cpu, "memory": traits.memory}, "limits": {"memory": traits.memory}}
    if spec.resources is not None:
        for kind in ("requests", "limits"):
            override = getattr(spec.resources, kind)
            if override:
                resources.setdefault(kind, {}).update(override)
    node_selector = dict(spec.node_selector or {})
    tolerations = [t.to_wire() for t in spec.tolerations or ()]
    if decision.gpu:
        count = str(spec.gpu.count if spec.gpu else 1)
        resources.setdefault("limits", {})[GPU_RESOURCE] = count
        resources.setdefault("requests", {})[GPU_RESOURCE] = count
        if spec.gpu and spec.gpu.product:
            node_selector[GPU_PRODUCT_LABEL] = spec.gpu.product
        for toleration in config.gpu_tolerations:
            wire = toleration.to_wire()
            if wire not in tolerations:
                tolerations.append(wire)
    return PodPlacement(resources, node_selector, tolerations, decision.gpu, decision.reason)


def variant_uri(model: ModelRef, layout: str) -> str:
    """Where a model's precision variant lives inside its version's repository (see docs/models.md)."""
    return contract.variant_uri(model.storage_uri, layout, model.precision)


def check_pullable(model: ModelRef, runtime: Runtime) -> None:
    if model.storage_uri.startswith("file://"):
        raise UnsupportedSpec(
            f"storageUri {model.storage_uri!r}: file:// is only readable by `mlsd serve` on one machine; "
            f"a {runtime.value} pod cannot pull it: use pvc://, s3:// or gs://")


RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
