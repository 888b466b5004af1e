"""Validate rendered objects offline: built-in kinds with kubernetes-validate, custom kinds against
the upstream CRD schemas (KServe and Gateway API from ../shared/crds, KEDA and prometheus-operator
from their Go modules) (strict: a field the CRD does not know is an error, since the API server
would prune it silently)."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import kubernetes_validate

from mlsd_operator import _yaml
from tests.conftest import keda_crds_dir, prometheus_operator_crds_dir, upstream_crds_dir

KUBERNETES_VERSION = "1.34"
_CRD_FILES = {
    ("serving.kserve.io", "InferenceService"): "kserve/serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io", "ServingRuntime"): "kserve/serving.kserve.io_servingruntimes.yaml",
    ("gateway.networking.k8s.io", "HTTPRoute"): "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
    ("keda.sh", "ScaledObject"): "keda/keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com", "PodMonitor"): "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com", "ServiceMonitor"): "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
}
_GO_MODULE_CRDS = {"keda/": keda_crds_dir, "prometheus-operator/": prometheus_operator_crds_dir}


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-validations")}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


@functools.cache
def _crd_validator(group: str, kind: str, version: str) -> jsonschema.protocols.Validator:
    relative = _CRD_FILES[(group, kind)]
    prefix, _, name = relative.partition("/")
    source = _GO_MODULE_CRDS.get(prefix + "/")
    doc = _yaml.load_all(source() / name if source else upstream_crds_dir() / relative)[0]
    (entry,) = [v for v in doc["spec"]["versions"] if v["name"] == version]
    schema = _strict(entry["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def validate(obj: dict[str, Any]) -> None:
    group, _, version = obj["apiVersion"].rpartition("/")
    if (group, obj["kind"]) in _CRD_FILES:
        _crd_validator(group, obj["kind"], version).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
