"""spec.batch and spec.drift/spec.retraining with real parts: the operator (as its ServiceAccount)
on the real control plane (the Job controller creates the batch pods on kwok nodes), a real
Prometheus scraping a real KServe predictor on loopback, and generated traffic.

kwok pods run nothing, so the batch Job's container is run here, from the Job the operator created,
with the environment Kubernetes would give it (JOB_COMPLETION_INDEX, the job-name label through the
downward API) and its /mnt/pvc/<claim> paths mapped to local folders; the predictor runs as a local
process whose series carry the labels Prometheus adds in-cluster (namespace, model_deployment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from kubernetes import client

from mlsd_operator import _yaml
from mlsd_predictors.batch._output import latest_run, read_run
from tests.conftest import manifest
from tests.integration.operator_harness import OperatorProcess, eventually, install_crds
from tests.integration.rollout_harness import CASE, Predictor
from tests.integration.test_operator import GROUP, PLURAL, VERSION, condition

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def operator(control_plane, prometheus, tmp_path_factory):
    install_crds(control_plane)
    process = OperatorProcess(control_plane, tmp_path_factory.mktemp("patterns-operator") / "operator.log",
                              env={"MLSD_PROMETHEUS_URL": prometheus.url, "MLSD_DRIFT_TICK_SECONDS": "1"}).start()
    yield process
    process.stop()


@pytest.fixture
def apis(api_client):
    return client.CustomObjectsApi(api_client), client.BatchV1Api(api_client), client.CoreV1Api(api_client)


def mdep_of(apis, namespace: str, name: str) -> dict:
    return apis[0].get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def events(apis, namespace: str, reason: str) -> list:
    return [e for e in apis[2].list_namespaced_event(namespace).items if e.reason == reason]


# -- batch ----------------------------------------------------------------------------------------

def run_job_pods_here(job: client.V1Job, pods: list, mounts: dict[str, Path]) -> None:
    """Runs each completion index of `job` as its pod would: same command and args, JOB_COMPLETION_INDEX,
    and MLSD_BATCH_RUN from the pod's job-name label (the downward API's source)."""
    container = job.spec.template.spec.containers[0]
    env_spec = {e.name: e for e in container.env}
    label = env_spec["MLSD_BATCH_RUN"].value_from.field_ref.field_path       # metadata.labels['...']
    label_key = label.split("'")[1]

    def local(arg: str) -> str:
        for prefix, path in mounts.items():
            arg = arg.replace(prefix, str(path))
        return arg

    for index in range(job.spec.completions):
        pod = next(p for p in pods if p.metadata.annotations.get("batch.kubernetes.io/job-completion-index") == str(index))
        env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "MLSD_BATCH_RUN": pod.metadata.labels[label_key]}
        command = [sys.executable if c == "python" else c for c in container.command]
        result = subprocess.run([*command, *(local(a) for a in container.args)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr


def test_batch_cronjob_and_on_demand_runs(control_plane, operator, models, apis, namespace, tmp_path):
    custom, batch_api, core = apis
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    rows = {"sparse_ids": rng.integers(0, 1_000_000, size=(500, 8)).astype(np.int64),
            "dense": rng.lognormal(1.0, 1.0, size=(500, 6)).astype(np.float32)}
    np.savez(data / "requests.npz", **rows)
    batch = {"schedule": "0 3 * * *", "input": "pvc://data/requests.npz", "output": "pvc://data/ctr",
             "parallelism": 2, "batchSize": 100}
    obj = manifest(name="ctr", namespace=None, model={"storageUri": "pvc://models/ad-click-prediction/1"}, batch=batch)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_yaml.dump(obj))

    cron = eventually(operator, lambda: batch_api.read_namespaced_cron_job("ctr-batch", namespace), "the CronJob")
    assert cron.spec.schedule == "0 3 * * *" and cron.spec.concurrency_policy == "Forbid"
    assert cron.metadata.owner_references[0].kind == "ModelDeployment"

    # an on-demand run: one Job per annotation value
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ctr",
                                          {"metadata": {"annotations": {"mlsd.io/batch-run": "manual-1"}}})
    recorded = eventually(operator, lambda: ((mdep_of(apis, namespace, "ctr").get("status") or {}).get("batch") or {})
                          .get("lastRun") == "manual-1" and mdep_of(apis, namespace, "ctr"), "status.batch")
    job_name = recorded["status"]["batch"]["lastJob"]
    job = batch_api.read_namespaced_job(job_name, namespace)
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2
    assert eventually(operator, lambda: events(apis, namespace, "BatchRunStarted"), "the BatchRunStarted Event")
    # the real Job controller creates one pod per index, labelled with the Job's name
    pods = eventually(operator, lambda: (lambda p: p if len(p) == 2 else None)(
        core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}").items),
        "the Job's two pods")
    run_job_pods_here(job, pods, {"/mnt/pvc/models": models, "/mnt/pvc/data": data})
    assert latest_run(data / "ctr") == job_name
    _, scored = read_run(data / "ctr")
    assert scored["click_probability"].shape == (500, 1)

    # the same rows online, through a predictor serving the same variant
    predictor = Predictor(models / CASE / "1" / "kserve" / "fp32", "stable", tmp_path)
    try:
        online = []
        for start in range(0, 500, 50):
            body = {"inputs": [{"name": n, "datatype": "INT64" if n == "sparse_ids" else "FP32",
                                "shape": list(a[start:start + 50].shape), "data": a[start:start + 50].ravel().tolist()}
                               for n, a in rows.items()]}
            request = urllib.request.Request(f"http://{predictor.address}/v2/models/{CASE}/infer",
                                             data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as reply:
                outputs = {o["name"]: o for o in json.loads(reply.read())["outputs"]}
            online.append(np.asarray(outputs["click_probability"]["data"], np.float32).reshape(-1, 1))
        np.testing.assert_allclose(scored["click_probability"], np.concatenate(online), rtol=1e-5, atol=1e-6)
    finally:
        predictor.stop()

    # the same value again starts nothing; a retry of the handler finds the Job by name
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ctr",
                                          {"metadata": {"labels": {"touched": "yes"}}})
    time.sleep(2)
    jobs = batch_api.list_namespaced_job(namespace, label_selector="app.kubernetes.io/component=batch").items
    assert [j.metadata.name for j in jobs if j.metadata.owner_references[0].kind == "ModelDeployment"] == [job_name]

    # no schedule any more: the CronJob is pruned, on-demand runs stay possible
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ctr", {"spec": {"batch": {"schedule": None}}})
    eventually(operator, lambda: not [c for c in batch_api.list_namespaced_cron_job(namespace).items], "the CronJob pruned")


# -- drift ----------------------------------------------------------------------------------------

class WorldTraffic(threading.Thread):
    """Ad-click requests drawn from the build's synthetic world (the held-out data's distribution);
    `shift` multiplies the ad price, as a pricing change upstream would."""

    def __init__(self, address: str, rate: float = 25.0, rows: int = 8):
        super().__init__(daemon=True)
        from mlsd_predictors.casestudies._ad_click_prediction import Generator
        from mlsd_predictors.casestudies._training import seeded

        self.world, self.rng = Generator(seeded(0)), np.random.default_rng(17)
        self.address, self.rate, self.rows = address, rate, rows
        self.price_factor = 1.0
        self.stop_flag = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stop_flag.is_set():
            sparse, dense, _, _ = self.world.sample(self.rows, self.rng)
            dense[:, 1] *= self.price_factor
            body = {"inputs": [
                {"name": "sparse_ids", "datatype": "INT64", "shape": list(sparse.shape), "data": sparse.ravel().tolist()},
                {"name": "dense", "datatype": "FP32", "shape": list(dense.shape), "data": dense.ravel().tolist()}]}
            request = urllib.request.Request(f"http://{self.address}/v2/models/{CASE}/infer",
                                             data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10):
                    self.sent += 1
            except OSError:
                pass
            time.sleep(1.0 / self.rate)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(10)


def test_shifted_inputs_raise_drifted_and_start_exactly_one_retraining(control_plane, operator, prometheus, models,
                                                                        apis, namespace, tmp_path):
    custom, batch_api, _ = apis
    predictor = Predictor(models / CASE / "1" / "kserve" / "fp32", "stable", tmp_path)
    prometheus.scrape([(predictor.address, {"namespace": namespace, "model_deployment": "ctr"})])
    prometheus.wait_scraped(predictor.address, "mlsd_drift_reference_fraction")
    traffic = WorldTraffic(predictor.address)
    traffic.start()
    checks: list[dict] = []
    try:
        obj = manifest(name="ctr", namespace=None, model={"storageUri": "s3://models/ad/1"},
                       drift={"window": "1m", "interval": "10s", "minSamples": 300, "threshold": 0.2},
                       retraining={"cooldown": "1h", "job": {"image": "registry.example/mlsd-trainer:1",
                                                             "command": ["mlsd", "build"], "args": ["--all"]}})
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_yaml.dump(obj))

        def new_check(drifted):
            drift = (mdep_of(apis, namespace, "ctr").get("status") or {}).get("drift") or {}
            if drift.get("at") and (not checks or drift["at"] != checks[-1]["at"]):
                checks.append(drift)
            return checks and checks[-1]["at"] == drift.get("at") and drift.get("drifted") is drifted and drift

        # unshifted: three checks with a verdict, none drifted (the unit tests measure the rate over 500);
        # the first checks may have too little traffic in the window (no verdict: drifted absent)
        eventually(operator, lambda: new_check(False) and sum(c.get("drifted") is False for c in checks) >= 3,
                   "three undrifted checks", timeout=90)
        assert not [c for c in checks if c.get("drifted")], checks
        obj = mdep_of(apis, namespace, "ctr")
        assert condition(obj, "Drifted")["status"] == "False" and condition(obj, "Drifted")["reason"] == "NoDrift"
        assert not batch_api.list_namespaced_job(namespace).items

        traffic.price_factor = 25.0
        shifted_at = time.monotonic()
        drifted = eventually(operator, lambda: new_check(True), "Drifted after the price shift", timeout=90)
        print(f"DRIFT detected {time.monotonic() - shifted_at:.1f} s after the shift "
              f"(interval 10 s, window 1m); checks before it: {[c.get('drifted') for c in checks]}")
        assert drifted["features"][0]["feature"] == "input:ad_price", drifted["features"]
        obj = mdep_of(apis, namespace, "ctr")
        assert condition(obj, "Drifted")["status"] == "True"
        assert "input:ad_price" in condition(obj, "Drifted")["message"]
        assert eventually(operator, lambda: events(apis, namespace, "DriftDetected"), "the DriftDetected Event")
        job = eventually(operator, lambda: batch_api.read_namespaced_job("ctr-retrain-1", namespace), "the retraining Job")
        env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
        assert "input:ad_price" in env["MLSD_DRIFTED_FEATURES"] and env["MLSD_NEXT_VERSION"] == "2"
        # still drifted for several more checks: the cooldown holds, one Job in all
        seen = len(checks)
        eventually(operator, lambda: new_check(True) and len(checks) >= seen + 3, "three more drifted checks", timeout=90)
        retraining = [j.metadata.name for j in batch_api.list_namespaced_job(namespace).items]
        assert retraining == ["ctr-retrain-1"]
        status = mdep_of(apis, namespace, "ctr")["status"]["retraining"]
        assert status["count"] == 1 and status["lastJob"] == "ctr-retrain-1"
        assert len(events(apis, namespace, "RetrainingStarted")) == 1
    finally:
        traffic.stop()
        predictor.stop()
