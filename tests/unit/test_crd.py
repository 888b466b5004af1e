"""The CRD is generated from the API types, and the committed copy never drifts from them."""

from __future__ import annotations

import json

from mlsd_operator import _yaml
from mlsd_contract.api import crd
from tests.conftest import REPO

CRD_FILE = REPO / "manifests" / "crds" / "mlsd.io_modeldeployments.yaml"


def _schema():
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_matches_the_code():
    committed = _yaml.load_all(CRD_FILE)[0]
    assert committed == crd(), (
        f"{CRD_FILE.relative_to(REPO)} is stale: regenerate it with hack/update-chart.sh")


def test_schema_is_structural():
    text = json.dumps(_schema())
    for forbidden in ('"$ref"', '"anyOf"', '"allOf"', '"title"', '"$defs"', '"const"'):
        assert forbidden not in text, forbidden
    spec = _schema()["properties"]["spec"]
    assert spec["required"] == ["caseStudy", "model"]
    assert spec["properties"]["runtime"]["default"] == "kserve"


def test_names_subresources_and_printer_columns():
    spec = crd()["spec"]
    assert spec["names"]["shortNames"] == ["mdep"]
    version = spec["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.autoscaling.minReplicas"
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    assert columns == ["CASE", "RUNTIME", "STABLE", "CANARY", "TRAFFIC", "PHASE", "AGE"]


def test_every_cross_field_rule_is_emitted_as_cel():
    text = json.dumps(_schema())
    for message in [
        "autoscaling.maxReplicas must be >= autoscaling.minReplicas",
        "canary.model.version must differ from model.version",
        "canary.steps must be strictly increasing",
        "placement.gpu is only allowed with accelerator gpu or auto",
        "shadow.model.version must differ from canary.model.version",
        "shadow needs runtime triton",
    ]:
        assert message in text, message


def test_bounds_reach_the_schema():
    props = _schema()["properties"]["spec"]["properties"]
    steps = props["canary"]["properties"]["steps"]
    assert (steps["items"]["minimum"], steps["items"]["maximum"], steps["maxItems"]) == (1, 100, 20)
    latency = props["canary"]["properties"]["analysis"]["properties"]["maxLatencyP99Ms"]
    assert latency["minimum"] == 0 and latency["exclusiveMinimum"] is True
    assert props["placement"]["properties"]["gpu"]["properties"]["count"]["maximum"] == 8


def test_status_conditions_are_a_map_keyed_by_type():
    conditions = _schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
