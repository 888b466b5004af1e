"""Builders of spec.batch (CronJob, on-demand Job), spec.cache (predictor env) and spec.retraining
(the retraining Job): shapes the API server and the Job controller rely on, checked against the
Kubernetes schemas."""

from __future__ import annotations

import json

import pytest

from mlsd_contract.api import ModelDeployment
from mlsd_operator.builders import (
    RenderConfig, UnsupportedSpec, build_batch_job, build_children, build_retraining_job,
)
from tests import schemas
from tests.conftest import manifest

UID = "5c3ad1f2-0000-4000-8000-000000000002"
BATCH = {"schedule": "0 2 * * *", "input": "pvc://data/users.npz", "output": "pvc://data/recommendations",
         "batchSize": 128, "parallelism": 4}


def mdep(**spec) -> ModelDeployment:
    return ModelDeployment.model_validate(manifest(uid=UID, **spec))


@pytest.mark.parametrize("runtime", ["kserve", "triton"])
def test_scheduled_batch_renders_a_valid_cronjob(runtime):
    children = build_children(mdep(runtime=runtime, caseStudy="video-recommendation", batch=BATCH,
                                   model={"storageUri": "pvc://models/video-recommendation/1"}))
    cron = [c for c in children if c["kind"] == "CronJob"]
    assert len(cron) == 1
    schemas.validate(cron[0])
    assert cron[0]["spec"]["schedule"] == "0 2 * * *"
    assert cron[0]["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron[0]["spec"]["jobTemplate"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 4, 4)
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "mlsd_predictors.batch"]
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"])
    assert args["model-dir"] == "/mnt/pvc/models/video-recommendation/1/kserve/fp32"
    assert args["input"] == "/mnt/pvc/data/users.npz"
    assert args["output"] == "/mnt/pvc/data/recommendations"
    assert (args["shards"], args["batch-size"]) == ("4", "128")
    # the run id is the Job's name, from the label the Job controller puts on its pods
    env = {e["name"]: e for e in container["env"]}
    assert "batch.kubernetes.io/job-name" in env["MLSD_BATCH_RUN"]["valueFrom"]["fieldRef"]["fieldPath"]
    # one volume per claim: models read-only; data written (input and output share the claim)
    claims = {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models": True, "data": False}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_unscheduled_batch_has_no_cronjob_and_renders_on_demand_jobs():
    obj = mdep(batch={k: v for k, v in BATCH.items() if k != "schedule"})
    assert not [c for c in build_children(obj) if c["kind"] == "CronJob"]
    job = build_batch_job(obj, RenderConfig(), "2026-11-27")
    schemas.validate(job)
    assert job["metadata"]["annotations"]["mlsd.io/batch-run"] == "2026-11-27"
    assert job["metadata"]["ownerReferences"][0]["uid"] == UID
    assert build_batch_job(obj, RenderConfig(), "2026-11-27")["metadata"]["name"] == job["metadata"]["name"]
    assert build_batch_job(obj, RenderConfig(), "again")["metadata"]["name"] != job["metadata"]["name"]


def test_batch_with_local_file_uris_cannot_run_in_a_cluster():
    obj = mdep(batch=BATCH | {"input": "file:///tmp/users.npz"})
    with pytest.raises(UnsupportedSpec, match="mlsd batch"):
        build_children(obj)


def test_cache_reaches_the_kserve_predictor_as_env():
    obj = mdep(caseStudy="visual-search", cache={"size": 5000, "ttl": "2m"},
               canary={"model": {"version": "2", "storageUri": "pvc://models/visual-search/2"}, "steps": [10]})
    isvc = next(c for c in build_children(obj) if c["kind"] == "InferenceService")
    schemas.validate(isvc)
    for model in (isvc["spec"]["predictor"]["model"], isvc["spec"]["canary"][0]["predictor"]["model"]):
        env = {e["name"]: e["value"] for e in model["env"]}
        assert env["MLSD_CACHE_SIZE"] == "5000" and env["MLSD_CACHE_TTL_SECONDS"] == "120"
    plain = next(c for c in build_children(mdep()) if c["kind"] == "InferenceService")
    assert "MLSD_CACHE_SIZE" not in json.dumps(plain)


def test_retraining_job_carries_the_drift_and_never_secret_values():
    obj = mdep(drift={}, retraining={"job": {"image": "registry.example/trainer:1", "command": ["train"],
                                             "env": [{"name": "EPOCHS", "value": "3"}],
                                             "envFromSecrets": ["s3-credentials"]}})
    drift = {"features": [{"feature": "input:ad_price", "psi": 1.7}, {"feature": "input:position", "psi": 0.4}]}
    job = build_retraining_job(obj, RenderConfig(), 3, drift)
    schemas.validate(job)
    assert job["metadata"]["name"] == "demo-retrain-3"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EPOCHS"] == "3" and env["MLSD_CASE_STUDY"] == "ad-click-prediction"
    assert (env["MLSD_MODEL_VERSION"], env["MLSD_NEXT_VERSION"]) == ("1", "2")
    assert [f["feature"] for f in json.loads(env["MLSD_DRIFTED_FEATURES"])] == ["input:ad_price", "input:position"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_retraining_job_output_is_the_model_store_mounted_read_write():
    obj = mdep(drift={}, retraining={"job": {"image": "trainer:1", "output": "pvc://models",
                                             "args": ["build", "ad-click-prediction", "--version", "$(MLSD_NEXT_VERSION)",
                                                      "--out", "$(MLSD_OUTPUT_DIR)"]}})
    job = build_retraining_job(obj, RenderConfig(), 1, {"features": []})
    schemas.validate(job)
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["MLSD_OUTPUT_DIR"] == "/mnt/pvc/models"
    claims = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"claimName": "models", "readOnly": False}]
    assert {"name": claims and pod["volumes"][1]["name"], "mountPath": "/mnt/pvc/models", "readOnly": False} \
        in pod["containers"][0]["volumeMounts"]
