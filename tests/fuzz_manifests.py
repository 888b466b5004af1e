"""Hypothesis strategies for ModelDeployment manifests: valid starting points (the samples and the
`manifest()` factory with optional blocks added) mutated a few times each: wrong types,
out-of-range and boundary numbers, bad and odd strings (Unicode spaces, overlong, overflowing
durations), removed required fields, unknown fields, and valid fragments dropped where cross-field
rules bite. Shared by the unit fuzz (Python side alone) and the integration fuzz (Python side vs
the real API server)."""

from __future__ import annotations

import copy
import os
from typing import Any

from hypothesis import strategies as st

from mlsd_operator import _yaml
from tests.conftest import SAMPLES, canary, manifest

FUZZ_EXAMPLES = int(os.environ.get("MLSD_FUZZ_EXAMPLES", "150"))

_SAMPLE_DOCS = [doc for path in SAMPLES for doc in _yaml.load_all(path)]

_BLOCKS: dict[str, list[Any]] = {
    "canary": [canary("2"), canary("2", steps=[5, 100], interval="1m30s",
                                      analysis={"maxErrorRate": 0.5, "failureLimit": 1})],
    "shadow": [{"model": {"version": "9", "storageUri": "pvc://models/x/9"}, "percent": 50}],
    "gateway": [{"name": "web", "namespace": "gateways"}],
    "batching": [{"maxBatchSize": 64, "maxLatencyMs": 5}],
    "autoscaling": [{"minReplicas": 0, "maxReplicas": 3}, {"metric": "cpu", "target": 80},
                    {"minReplicas": 2, "maxReplicas": 2}],
    "placement": [{"accelerator": "gpu", "gpu": {"count": 2, "product": "NVIDIA-L4"}},
                  {"accelerator": "auto", "tolerations": [{"key": "k", "operator": "Exists"}],
                   "nodeSelector": {"pool": "a"}, "resources": {"requests": {"cpu": "500m"}}}],
    "kserve": [{"deploymentMode": "Serverless"}],
    "cache": [{"size": 100, "ttl": "5m"}],
    "drift": [{"window": "1h", "interval": "30s", "threshold": 0.1, "minSamples": 100}],
    "retraining": [{"cooldown": "1h", "webhook": {"url": "https://hooks.example/x"}},
                   {"job": {"image": "trainer:1", "envFromSecrets": ["creds"]}}],
    "batch": [{"input": "pvc://data/in.npz", "output": "pvc://data/out", "schedule": "0 2 * * *"}],
    "model": [{"storageUri": "s3://bucket/m/1", "storageSecretName": "creds"},
              {"storageUri": "gs://bucket/m/1", "precision": "int8"}],
}

# Values that break types, ranges and patterns, or sit right at their edges.
_BAD_SCALARS: list[Any] = [
    None, True, False, 0, -1, 1, 2, 8, 9, 100, 101, 1000, 1001, 4096, 4097, 2**31, 2**63, -(2**63) - 1,
    0.0, 0.5, 1.0, 1.5, -0.1, 10.5, 1e308, "", "x", "1", "0", "-1", "1.5", "true", "null",
    "Standard", "Serverless", "fp16", "int8", "gpu", "cpu", "auto", "rps", "memory", "triton",
    "a" * 64, "a" * 254, "v1.2-rc_3", "-bad", "bad-", "UPPER", "with space", "tab\there", "new\nline",
    "nbsp\u00a0inside", "em\u2003space", "é", "1s", "0s", "999ms", "1m", "59s", "1h1h", "01s", "1.5s",
    "9999999999h", "99999999999999s", "2562047h47m16s", "2562047h47m17s", "1d", "0 2 * * *\u00a0", "s3://b/k", "gs://b/k", "pvc://c/p", "file:///m",
    "s3://b/../k", "s3://b/..", "pvc://c/p\u00a0x", "http://x", "s3://", "0 2 * * *", "@daily", "* * *",
    [], [1], [10, 5], [10, 10], [10, 20], ["x"], {}, {"x": 1},
]
_NAMES = ["unknownField", "foo", "status", "apiVersion", "minreplicas", "storage_uri", "x-kubernetes"]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, prefix + (index,))
    return out


def _parent(root: Any, path: tuple) -> Any:
    for key in path[:-1]:
        root = root[key]
    return root


@st.composite
def base_manifests(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        doc = copy.deepcopy(draw(st.sampled_from(_SAMPLE_DOCS)))
    else:
        doc = manifest(name="fuzz", runtime=draw(st.sampled_from(["kserve", "triton"])),
                       caseStudy=draw(st.sampled_from(["visual-search", "harmful-content",
                                                       "video-recommendation", "ad-click-prediction"])))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(_BLOCKS)))
        block = copy.deepcopy(draw(st.sampled_from(_BLOCKS[key])))
        current = doc["spec"].get(key)
        doc["spec"][key] = {**current, **block} if isinstance(current, dict) else block
    doc["metadata"] = {"name": "fuzz"}
    return doc


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A manifest after 0-3 mutations inside `spec` (the part users write and rules guard)."""
    doc = draw(base_manifests())
    for _ in range(draw(st.integers(0, 3))):
        paths = [("spec",) + p for p in _paths(doc["spec"])]
        path = draw(st.sampled_from(paths))
        target = _parent(doc, path) if len(path) > 1 else None
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "unknown", "text", "number"]))
        if action == "unknown" or target is None:
            node = doc["spec"] if target is None else _parent(doc, path + ("",))
            if isinstance(node, dict):
                node[draw(st.sampled_from(_NAMES))] = copy.deepcopy(draw(st.sampled_from(_BAD_SCALARS)))
            continue
        key = path[-1]
        if action == "delete":
            if isinstance(target, dict):
                del target[key]
            else:
                target.pop(key)
        elif action == "text":
            target[key] = draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
        elif action == "number":
            target[key] = draw(st.one_of(st.integers(-(2**64), 2**64),
                                         st.floats(allow_nan=False, allow_infinity=False, width=64)))
        else:
            target[key] = copy.deepcopy(draw(st.sampled_from(_BAD_SCALARS)))
    return doc
