"""Every schema bound and cross-field rule, checked by `validate_manifest` (the CLI's path).

The same cases run against the real API server in tests/integration/test_crd.py."""

from __future__ import annotations

import pytest

from mlsd_contract.api import ModelDeployment, validate_manifest
from tests.conftest import SAMPLES, canary, manifest
from mlsd_operator import _yaml

BATCH = {"input": "pvc://data/users.npz", "output": "pvc://data/recommendations"}

# (id, manifest, field path, reason fragment) -- the cases the API server must reject too.
INVALID = [
    ("unknown-case-study", manifest(caseStudy="fraud"), "spec.caseStudy", "Input should be"),
    ("unknown-runtime", manifest(runtime="tfserving"), "spec.runtime", "Input should be"),
    ("bad-precision", manifest(model={"precision": "int4"}), "spec.model.precision", "Input should be"),
    ("missing-storage-uri", manifest(model={"storageUri": None}), "spec.model.storageUri", "Field required"),
    ("bad-uri-scheme", manifest(model={"storageUri": "http://x/y"}), "spec.model.storageUri", "should match pattern"),
    ("dotdot-uri", manifest(model={"storageUri": "pvc://models/../secrets"}), "spec.model",
     "storageUri must not contain '..' path segments"),
    ("bad-version", manifest(model={"version": "v 1"}), "spec.model.version", "should match pattern"),
    ("replicas-inverted", manifest(autoscaling={"minReplicas": 5, "maxReplicas": 2}), "spec.autoscaling",
     "autoscaling.maxReplicas must be >= autoscaling.minReplicas"),
    ("replicas-over-bound", manifest(autoscaling={"maxReplicas": 5000}), "spec.autoscaling.maxReplicas",
     "less than or equal to 1000"),
    ("cpu-target-over-100", manifest(autoscaling={"metric": "cpu", "target": 150}), "spec.autoscaling",
     "utilisation percent"),
    ("bad-metric", manifest(autoscaling={"metric": "gpu"}), "spec.autoscaling.metric", "Input should be"),
    ("canary-same-version", manifest(canary=canary("1")), "spec",
     "canary.model.version must differ from model.version"),
    ("steps-not-increasing", manifest(canary=canary(steps=[10, 50, 25])), "spec.canary",
     "canary.steps must be strictly increasing"),
    ("steps-repeated", manifest(canary=canary(steps=[10, 10])), "spec.canary",
     "canary.steps must be strictly increasing"),
    ("step-over-100", manifest(canary=canary(steps=[10, 120])), "spec.canary.steps[1]", "less than or equal to 100"),
    ("step-zero", manifest(canary=canary(steps=[0, 10])), "spec.canary.steps[0]", "greater than or equal to 1"),
    ("steps-empty", manifest(canary=canary(steps=[])), "spec.canary.steps", "at least 1 item"),
    ("interval-garbage", manifest(canary=canary(interval="soon")), "spec.canary.interval", "should match pattern"),
    ("interval-too-short", manifest(canary=canary(interval="500ms")), "spec.canary",
     "canary.interval must be at least 1s"),
    ("error-rate-over-1", manifest(canary=canary(analysis={"maxErrorRate": 1.5})),
     "spec.canary.analysis.maxErrorRate", "less than or equal to 1"),
    ("failure-limit-zero", manifest(canary=canary(analysis={"failureLimit": 0})),
     "spec.canary.analysis.failureLimit", "greater than or equal to 1"),
    ("gpu-on-cpu", manifest(placement={"accelerator": "cpu", "gpu": {"count": 1}}), "spec.placement",
     "placement.gpu is only allowed with accelerator gpu or auto"),
    ("gpu-count-over", manifest(placement={"accelerator": "gpu", "gpu": {"count": 9}}),
     "spec.placement.gpu.count", "less than or equal to 8"),
    ("shadow-on-kserve", manifest(shadow={"model": {"version": "3", "storageUri": "pvc://m/3"}}), "spec",
     "shadow needs runtime triton"),
    ("shadow-same-as-stable", manifest(runtime="triton", shadow={"model": {"version": "1", "storageUri": "pvc://m/1"}}),
     "spec", "shadow.model.version must differ from model.version"),
    ("shadow-same-as-canary", manifest(runtime="triton", canary=canary("2"),
                                       shadow={"model": {"version": "2", "storageUri": "pvc://m/2"}}),
     "spec", "shadow.model.version must differ from canary.model.version"),
    ("scale-to-zero-triton", manifest(runtime="triton", autoscaling={"minReplicas": 0}), "spec",
     "minReplicas 0 (scale to zero) needs runtime kserve with deploymentMode Serverless"),
    ("scale-to-zero-standard", manifest(autoscaling={"minReplicas": 0}), "spec",
     "minReplicas 0 (scale to zero) needs runtime kserve with deploymentMode Serverless"),
    ("unknown-field", manifest(replicas=3), "spec.replicas", "unknown field"),
    ("bad-quantity", manifest(placement={"resources": {"requests": {"cpu": "lots"}}}),
     "spec.placement.resources.requests.cpu", "should match pattern"),
    ("cache-personalised", manifest(caseStudy="ad-click-prediction", cache={"size": 100}), "spec",
     "cache is refused for personalised case studies"),
    ("cache-on-triton", manifest(caseStudy="visual-search", runtime="triton", cache={"size": 100}), "spec",
     "cache needs runtime kserve"),
    ("cache-ttl-short", manifest(caseStudy="visual-search", cache={"ttl": "10ms"}), "spec.cache",
     "ttl must be at least 1s"),
    ("batch-s3-output", manifest(batch=BATCH | {"output": "s3://bucket/out"}), "spec.batch.output",
     "should match pattern"),
    ("batch-same-in-out", manifest(batch=BATCH | {"output": BATCH["input"]}), "spec.batch",
     "batch.output must differ from batch.input"),
    ("batch-dotdot", manifest(batch=BATCH | {"output": "pvc://data/../etc"}), "spec.batch",
     "must not contain '..' path segments"),
    ("batch-bad-schedule", manifest(batch=BATCH | {"schedule": "nightly"}), "spec.batch.schedule",
     "should match pattern"),
    ("drift-window-short", manifest(drift={"window": "30s"}), "spec.drift", "window must be at least 1m"),
    ("drift-on-triton", manifest(runtime="triton", drift={}), "spec", "drift needs runtime kserve"),
    ("retraining-without-drift", manifest(retraining={"webhook": {"url": "http://hook/x"}}), "spec",
     "retraining is triggered by drift"),
    ("retraining-job-and-webhook", manifest(drift={}, retraining={"webhook": {"url": "http://hook/x"},
                                                                   "job": {"image": "trainer:1"}}),
     "spec.retraining", "exactly one of job or webhook"),
    ("retraining-cooldown-short", manifest(drift={}, retraining={"cooldown": "5s", "job": {"image": "t:1"}}),
     "spec.retraining", "cooldown must be at least 1m"),
    # Found by the schema fuzz (tests/integration/test_crd_fuzz.py): the API server refused these
    # (or, for the first, accepted it) while `mlsd validate` disagreed.
    ("uri-unicode-space", manifest(model={"storageUri": "pvc://models/a\u00a0b"}), "spec.model.storageUri",
     "should match pattern"),
    ("interval-overflows-cel", manifest(canary=canary(interval="9999999999h")), "spec.canary", "out of range"),
    ("replicas-bool", manifest(autoscaling={"maxReplicas": True}), "spec.autoscaling.maxReplicas", "valid integer"),
    ("replicas-string", manifest(autoscaling={"maxReplicas": "3"}), "spec.autoscaling.maxReplicas", "valid integer"),
    ("storage-secret-on-pvc", manifest(model={"storageSecretName": "creds"}), "spec.model",
     "storageSecretName is only used with an s3:// or gs:// storageUri"),
]


@pytest.mark.parametrize(("obj", "path", "reason"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_rejected_with_path_and_reason(obj, path, reason):
    mdep, problems = validate_manifest(obj)
    assert mdep is None
    assert any(p.path == path and reason in p.reason for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_is_valid(sample):
    (doc,) = _yaml.load_all(sample)
    mdep, problems = validate_manifest(doc)
    assert problems == []
    assert mdep.spec.case_study.value == sample.stem


def test_samples_cover_the_four_case_studies_and_the_features():
    specs = [ModelDeployment.model_validate(_yaml.load_all(p)[0]).spec for p in SAMPLES]
    assert {s.case_study.value for s in specs} == {
        "visual-search", "harmful-content", "video-recommendation", "ad-click-prediction"}
    assert any(s.runtime.value == "triton" for s in specs)
    assert any(s.canary for s in specs)
    assert any(s.shadow for s in specs)
    assert any(s.placement.accelerator.value == "gpu" for s in specs)


def test_defaults_fill_in_like_the_api_server():
    mdep, _ = validate_manifest(manifest())
    spec = mdep.spec
    assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (1, 1)
    assert spec.placement.accelerator.value == "cpu"
    assert spec.kserve.deployment_mode.value == "Standard"
    mdep, _ = validate_manifest(manifest(canary=canary()))
    assert mdep.spec.canary.interval == "60s"
    assert mdep.spec.canary.analysis.failure_limit == 2


def test_scale_to_zero_is_allowed_on_kserve_serverless():
    _, problems = validate_manifest(manifest(autoscaling={"minReplicas": 0}, kserve={"deploymentMode": "Serverless"}))
    assert problems == []


def test_a_known_field_set_to_null_is_absent_like_on_the_api_server():
    doc = manifest()
    doc["spec"] |= {"runtime": None, "batching": None}
    mdep, problems = validate_manifest(doc)
    assert problems == [] and mdep.spec.runtime.value == "kserve"       # the default, as the server prunes nulls
    doc["spec"]["model"]["version"] = None
    assert [p.path for p in validate_manifest(doc)[1]] == ["spec.model.version"]
    doc = manifest()
    doc["spec"]["surprise"] = None
    assert [str(p) for p in validate_manifest(doc)[1]] == ["spec.surprise: unknown field"]


@pytest.mark.parametrize("obj", [[], "text", {"apiVersion": "v1", "kind": "Pod"}])
def test_not_a_model_deployment(obj):
    mdep, problems = validate_manifest(obj)
    assert mdep is None and len(problems) == 1
