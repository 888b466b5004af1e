"""Batch prediction and retraining workloads: the CronJob (and on-demand Jobs) of `spec.batch`, and
the retraining Job that drift starts (`spec.retraining.job`).

A batch pod runs `python -m mlsd_predictors.batch`: the predictor image and the predictor's own
model class over the input rows, so batch answers equal online answers for the same rows. Each pod
of the Indexed Job scores one contiguous shard; the run id is the Job's name, so a retried pod redoes
its own shard of the same run, and the shard that completes the set commits the run atomically
(predictors/mlsd_predictors/batch/_output.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlsd_contract import KSERVE_LAYOUT
from mlsd_contract.api import ModelDeployment, parse_duration

from . import _common as c
from ._config import RenderConfig

PVC_ROOT = "/mnt/pvc"
BATCH_RUN_ANNOTATION = "mlsd.io/batch-run"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
FINISHED_JOB_TTL_SECONDS = 7 * 24 * 3600


class _Volumes:
    """One read-only or read-write mount per PersistentVolumeClaim the pod reads or writes."""

    def __init__(self) -> None:
        self.claims: dict[str, bool] = {}       # claim -> read-only

    def path(self, uri: str, *, write: bool = False) -> str:
        claim, _, sub_path = uri.removeprefix("pvc://").partition("/")
        self.claims[claim] = self.claims.get(claim, True) and not write
        return f"{PVC_ROOT}/{claim}/{sub_path}".rstrip("/")

    def volumes(self) -> list[dict[str, Any]]:
        return [{"name": _volume_name(claim), "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}
                for claim, read_only in self.claims.items()]

    def mounts(self) -> list[dict[str, Any]]:
        return [{"name": _volume_name(claim), "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": read_only}
                for claim, read_only in self.claims.items()]


def _volume_name(claim: str) -> str:
    return c.dns_name("pvc", hashlib.sha256(claim.encode()).hexdigest()[:10])


def batch_name(mdep: ModelDeployment) -> str:
    return c.dns_name(mdep.metadata.name, "batch", max_length=52)    # CronJob names: 52 characters at most


def on_demand_name(mdep: ModelDeployment, run: str) -> str:
    return c.dns_name(mdep.metadata.name, "batch", hashlib.sha256(run.encode()).hexdigest()[:8], max_length=63)


def _check_cluster_uri(field: str, uri: str) -> None:
    if not uri.startswith("pvc://"):
        raise c.UnsupportedSpec(f"{field} {uri!r}: file:// is for `mlsd batch` on one machine; a batch pod "
                                "reads and writes pvc://<claim>/<path>")


def _job_spec(mdep: ModelDeployment, config: RenderConfig) -> dict[str, Any]:
    spec, batch = mdep.spec, mdep.spec.batch
    assert batch is not None
    _check_cluster_uri("batch.input", batch.input)
    _check_cluster_uri("batch.output", batch.output)
    c.check_pullable(spec.model, spec.runtime)
    volumes = _Volumes()
    model_uri = c.variant_uri(spec.model, KSERVE_LAYOUT)
    model_dir = volumes.path(model_uri) if model_uri.startswith("pvc://") else model_uri
    input_path = volumes.path(batch.input)
    output_path = volumes.path(batch.output, write=True)
    pod = c.placement(mdep, config)
    container = {
        "name": "batch",
        "image": config.predictor_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["python", "-m", "mlsd_predictors.batch"],
        "args": [
            f"--case-study={spec.case_study.value}",
            f"--model-dir={model_dir}",
            f"--input={input_path}",
            f"--output={output_path}",
            f"--shards={batch.parallelism}",
            f"--batch-size={batch.batch_size}",
            f"--keep-runs={batch.keep_runs}",
        ],
        # The run id is the Job's name: every pod (and retry) of one run writes the same run.
        "env": [{"name": "MLSD_BATCH_RUN",
                 "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}}}],
        "resources": pod.resources,
        "securityContext": c.RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *volumes.mounts()],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": c.RESTRICTED_POD_SECURITY,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes.volumes()],
    }
    if pod.node_selector:
        pod_spec["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        pod_spec["tolerations"] = pod.tolerations
    return {
        "completionMode": "Indexed",
        "completions": batch.parallelism,
        "parallelism": batch.parallelism,
        "backoffLimit": 2 * batch.parallelism,
        "activeDeadlineSeconds": int(parse_duration(batch.active_deadline)),
        "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
        "template": {
            "metadata": {"labels": c.labels(mdep, component="batch", version=spec.model.version)},
            "spec": pod_spec,
        },
    }


def build_batch_cronjob(mdep: ModelDeployment, config: RenderConfig) -> dict[str, Any]:
    batch = mdep.spec.batch
    assert batch is not None and batch.schedule is not None
    object_labels = c.labels(mdep, component="batch", version=mdep.spec.model.version)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": c.metadata(mdep, batch_name(mdep), object_labels),
        "spec": {
            "schedule": batch.schedule,
            "concurrencyPolicy": "Forbid",       # one run at a time writes the output
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": object_labels}, "spec": _job_spec(mdep, config)},
        },
    }


def build_batch_job(mdep: ModelDeployment, config: RenderConfig, run: str) -> dict[str, Any]:
    """A one-off run, started by a new value of the mlsd.io/batch-run annotation."""
    object_labels = c.labels(mdep, component="batch", version=mdep.spec.model.version)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": c.metadata(mdep, on_demand_name(mdep, run), object_labels, {BATCH_RUN_ANNOTATION: run}),
        "spec": _job_spec(mdep, config),
    }


def retraining_job_name(mdep: ModelDeployment, number: int) -> str:
    return c.dns_name(mdep.metadata.name, "retrain", str(number))


def build_retraining_job(mdep: ModelDeployment, config: RenderConfig, number: int,
                         drift: dict[str, Any]) -> dict[str, Any]:
    """The `number`-th retraining Job. The user's container gets what it needs to build the next
    version: the case study, the serving version and the drifted features (MLSD_* variables)."""
    retraining = mdep.spec.retraining
    assert retraining is not None and retraining.job is not None
    job = retraining.job
    version = mdep.spec.model.version
    next_version = str(int(version) + 1) if version.isdigit() else ""
    env = [{"name": e.name, "value": e.value} for e in job.env or ()]
    env += [
        {"name": "MLSD_MODEL_DEPLOYMENT", "value": mdep.metadata.name},
        {"name": "MLSD_CASE_STUDY", "value": mdep.spec.case_study.value},
        {"name": "MLSD_MODEL_VERSION", "value": version},
        {"name": "MLSD_NEXT_VERSION", "value": next_version},
        {"name": "MLSD_STORAGE_URI", "value": mdep.spec.model.storage_uri},
        {"name": "MLSD_DRIFTED_FEATURES", "value": json.dumps(drift.get("features") or [], sort_keys=True)},
        {"name": "MLSD_RETRAINING_NUMBER", "value": str(number)},
    ]
    volumes = _Volumes()
    if job.output is not None:
        env.append({"name": "MLSD_OUTPUT_DIR", "value": volumes.path(job.output, write=True)})
    container: dict[str, Any] = {
        "name": "retrain",
        "image": job.image,
        "imagePullPolicy": config.image_pull_policy,
        "env": env,
        # Restricted, but with a writable root filesystem: training images commonly write beside their code.
        "securityContext": {k: v for k, v in c.RESTRICTED_CONTAINER_SECURITY.items() if k != "readOnlyRootFilesystem"},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *volumes.mounts()],
    }
    if job.command:
        container["command"] = list(job.command)
    if job.args:
        container["args"] = list(job.args)
    if job.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": name}} for name in job.env_from_secrets]
    if job.resources is not None:
        container["resources"] = job.resources.to_wire()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": c.RESTRICTED_POD_SECURITY,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes.volumes()],
    }
    if job.service_account_name:
        pod_spec["serviceAccountName"] = job.service_account_name
    else:
        pod_spec["automountServiceAccountToken"] = False
    object_labels = c.labels(mdep, component="retraining", version=version)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": c.metadata(mdep, retraining_job_name(mdep, number), object_labels,
                               {"mlsd.io/drifted-features": ", ".join(f["feature"] for f in drift.get("features") or [])[:1000]}),
        "spec": {
            "backoffLimit": job.backoff_limit,
            "activeDeadlineSeconds": int(parse_duration(job.active_deadline)),
            "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": object_labels}, "spec": pod_spec},
        },
    }
