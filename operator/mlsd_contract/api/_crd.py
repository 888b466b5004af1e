"""Generates the ModelDeployment CRD from the pydantic models (the one source of the schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ._types import (
    GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, ModelDeploymentSpec, ModelDeploymentStatus,
)

# Keys pydantic emits that have no place (or another meaning) in a Kubernetes structural schema.
_DROPPED_KEYS = {"title", "additionalProperties", "$defs", "discriminator"}

PRINTER_COLUMNS = [
    {"name": "Case", "type": "string", "jsonPath": ".spec.caseStudy"},
    {"name": "Runtime", "type": "string", "jsonPath": ".spec.runtime"},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stable.version"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canary.version"},
    {"name": "Traffic", "type": "integer", "jsonPath": ".status.canary.trafficPercent",
     "description": "Percent of traffic on the canary"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
        return _structural(node, defs)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {options}")
        if node.get("default", "") is None:
            node.pop("default")
        node = {**options[0], **node}
        return _structural(node, defs)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "exclusiveMinimum" in node:   # JSON Schema number -> OpenAPI v3.0 boolean form
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("items",):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):          # a map: keep the value schema
        out["additionalProperties"] = _structural(additional, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's schema in the structural OpenAPI v3 form the API server accepts."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _structural(schema, defs)


def _status_schema() -> dict[str, Any]:
    schema = openapi_schema(ModelDeploymentStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["items"]["required"] = ["type", "status"]
    return schema


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest for ModelDeployment."""
    root = {
        "type": "object",
        "description": "A served model of one case study, with its stable track and optional "
                       "canary and shadow tracks.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(ModelDeploymentSpec),
            "status": _status_schema(),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "mlsd-operator", "app.kubernetes.io/part-of": "mlsd-serving"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["mlsd"],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": root},
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.autoscaling.minReplicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
                "additionalPrinterColumns": PRINTER_COLUMNS,
            }],
        },
    }
