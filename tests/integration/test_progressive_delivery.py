"""Progressive delivery with real parts: a real Prometheus scraping real KServe predictor servers (or
real tritonserver processes, for the Triton tests) on loopback that receive generated traffic (split as the route says), and the real operator on the
real control plane. Time is compressed (5 s intervals, 1 s ticks and scrapes); the logic is the
production one. The predictors run as local processes, not in the kwok pods, since kwok pods run
nothing: their series carry the namespace/model_deployment labels Prometheus would add in-cluster."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

import pytest
from kubernetes import client

from mlsd_operator import _yaml
from tests.conftest import manifest
from tests.integration.operator_harness import OperatorProcess, install_crds
from tests.integration.rollout_harness import (
    CASE, Predictor, Traffic, TritonPredictor, rerecord_self_check, shift_probabilities, shifted_variant,
)
from tests.integration.test_operator import GROUP, PLURAL, VERSION, eventually, get_mdep, weights

# Two small ad-click models trained with different seeds differ by a PSI of about 0.15 on their
# scores; the shifted variant by about 3. The threshold sits between them.
ANALYSIS = {"minRequests": 20, "maxErrorRate": 0.05, "maxLatencyP99Ms": 5000, "maxPredictionDrift": 0.5,
            "failureLimit": 2}


@pytest.fixture(scope="module")
def rollout_operator(control_plane, prometheus, tmp_path_factory):
    install_crds(control_plane)
    process = OperatorProcess(control_plane, tmp_path_factory.mktemp("rollout-operator") / "operator.log",
                              env={"MLSD_PROMETHEUS_URL": prometheus.url, "MLSD_ROLLOUT_TICK_SECONDS": "1",
                                   "MLSD_SHADOW_WINDOW_SECONDS": "5"}).start()
    yield process
    process.stop()


@pytest.fixture
def k8s(api_client):
    return client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)


class Rollout:
    """One ModelDeployment with a canary, its two predictor processes, scraping and traffic."""

    def __init__(self, plane, operator, prometheus, k8s, namespace, work: Path, stable_dir: Path, canary_dir: Path,
                 steps=(20, 50), interval="5s", runtime="triton", backend=Predictor):
        self.plane, self.operator, self.namespace, self.k8s = plane, operator, namespace, k8s
        self.name = "ctr"
        self.stable = backend(stable_dir, "stable", work)
        self.canary = backend(canary_dir, "canary", work)
        labels = {"namespace": namespace, "model_deployment": self.name}
        prometheus.scrape([(self.stable.scrape_address, labels), (self.canary.scrape_address, labels)])
        routing = {"gateway": {"name": "gw"}} if runtime == "triton" else {}
        obj = manifest(name=self.name, namespace=None, runtime=runtime, **routing,
                       model={"storageUri": "s3://models/ad/1"},
                       canary={"model": {"version": "2", "storageUri": "s3://models/ad/2"},
                               "steps": list(steps), "interval": interval, "analysis": ANALYSIS})
        plane.kubectl("apply", "-n", namespace, "-f", "-", input=_yaml.dump(obj))
        self.traffic = Traffic(self.stable, self.canary, self.share)
        self.traffic.start()

    def mdep(self) -> dict:
        return get_mdep(_Apis(self.k8s[0]), self.namespace, self.name)

    def share(self) -> int:
        try:
            return int(((self.mdep().get("status") or {}).get("canary") or {}).get("trafficPercent") or 0)
        except Exception:
            return 0

    def wait(self, predicate, what: str, timeout: float = 120) -> dict:
        """Waits until `predicate(mdep)` holds and returns the ModelDeployment."""
        def check():
            obj = self.mdep()
            return obj if predicate(obj) else None

        try:
            return eventually(self.operator, check, what, timeout)
        except BaseException:
            print("status at failure:", _yaml.dump(self.mdep().get("status")), "traffic sent:", self.traffic.sent)
            raise

    def annotate(self, value: str | None) -> None:
        self.k8s[0].patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                   {"metadata": {"annotations": {"mlsd.io/rollout": value}}})

    def close(self) -> None:
        self.traffic.stop()
        self.stable.stop()
        self.canary.stop()


class _Apis:
    def __init__(self, custom):
        self.custom = custom


def canary_of(obj: dict) -> dict:
    return (obj.get("status") or {}).get("canary") or {}


def history_of(obj: dict) -> list[dict]:
    return (obj.get("status") or {}).get("history") or []


@pytest.fixture
def rollout(control_plane, rollout_operator, prometheus, k8s, namespace, models, tmp_path, request):
    created: list[Rollout] = []

    def start(canary_dir: Path | None = None, *, layout: str = "kserve", **kwargs) -> Rollout:
        """layout "kserve": KServe predictor processes; "triton": tritonserver processes."""
        if layout == "triton":
            kwargs["backend"] = TritonPredictor
        stable_dir = models / CASE / "1" / layout / "fp32"
        canary_dir = canary_dir or models / CASE / "2" / layout / "fp32"
        created.append(Rollout(control_plane, rollout_operator, prometheus, k8s, namespace, tmp_path,
                               stable_dir, canary_dir, **kwargs))
        return created[-1]

    yield start
    for item in created:
        item.close()


def test_a_good_canary_walks_every_step_and_is_promoted(rollout, control_plane, k8s, namespace):
    r = rollout()
    seen = set()

    def promoted(obj):
        seen.add(canary_of(obj).get("trafficPercent"))
        return obj["spec"]["model"]["version"] == "2" and "canary" not in obj["spec"]

    obj = r.wait(promoted, "promotion", timeout=150)
    assert {20, 50} <= seen, seen
    (entry,) = history_of(obj)
    assert entry["version"] == "2" and entry["outcome"] == "Promoted" and "all 2 steps passed" in entry["reason"]
    r.wait(lambda o: o["status"].get("phase") == "Ready" and o["status"]["stable"]["version"] == "2", "Ready on v2")
    apps = k8s[1]
    eventually(r.operator, lambda: sorted(d.metadata.name for d in apps.list_namespaced_deployment(namespace).items)
               == ["ctr-v2"], "the old stable's Deployment to go")
    assert weights(control_plane, namespace, "ctr") == [("ctr-v2", 100)]
    assert r.traffic.sent["canary"] > 0


def test_a_shifted_canary_is_rolled_back_at_its_first_step(rollout, control_plane, k8s, namespace, models, tmp_path):
    shifted = shifted_variant(models / CASE / "2" / "kserve" / "fp32", tmp_path / "shifted")
    r = rollout(shifted)
    obj = r.wait(lambda o: o.get("status", {}).get("phase") == "RolledBack", "rollback", timeout=150)
    (entry,) = history_of(obj)
    assert entry["outcome"] == "RolledBack" and entry["version"] == "2"
    assert entry["reason"].startswith("predictionDrift: prediction drift (PSI)"), entry["reason"]
    degraded = next(c for c in obj["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", "the stable track keeps serving"
    assert obj["spec"]["model"]["version"] == "1"
    eventually(r.operator, lambda: sorted(d.metadata.name for d in k8s[1].list_namespaced_deployment(namespace).items)
               == ["ctr-v1"], "the canary's Deployment to go")
    assert weights(control_plane, namespace, "ctr") == [("ctr-v1", 100)]
    # It never went past the first step.
    assert "50" not in str([e for e in control_plane.kubectl("get", "events", "-n", namespace).stdout.splitlines()
                            if "CanaryAdvance" in e])


def test_a_triton_canary_is_promoted_on_tritonservers_own_series(rollout):
    """Real tritonserver processes serve both tracks: no mlsd_* request series; the analysis reads
    nv_inference_request_success/failure, the p99 summary and the shim's score histograms."""
    r = rollout(layout="triton", steps=(50,))
    obj = r.wait(lambda o: o["spec"]["model"]["version"] == "2" and "canary" not in o["spec"],
                 "promotion on tritonserver's own series", timeout=180)
    (entry,) = history_of(obj)
    assert entry["outcome"] == "Promoted", entry
    assert r.traffic.sent["canary"] > 0


def test_a_miscalibrated_triton_canary_is_rolled_back_on_prediction_drift(rollout, models, tmp_path):
    repository = tmp_path / "miscalibrated"
    shutil.copytree(models / CASE / "2" / "triton" / "fp32", repository)
    (graph,) = repository.glob(f"{CASE}/*/model.onnx")
    shift_probabilities(graph)
    rerecord_self_check(repository)
    r = rollout(repository, layout="triton", steps=(50,))
    obj = r.wait(lambda o: o.get("status", {}).get("phase") == "RolledBack", "rollback on tritonserver", timeout=180)
    (entry,) = history_of(obj)
    assert entry["outcome"] == "RolledBack", entry
    assert entry["reason"].startswith("predictionDrift: prediction drift (PSI)"), entry["reason"]
    assert obj["spec"]["model"]["version"] == "1"


def test_a_restarted_operator_resumes_at_the_same_step(rollout, rollout_operator):
    r = rollout(steps=(20, 40, 60), interval="6s")
    r.wait(lambda o: canary_of(o).get("step") == 1, "the second step")
    before = canary_of(r.mdep())
    rollout_operator.kill()
    time.sleep(3)
    during = canary_of(r.mdep())
    assert during["step"] == before["step"] and during["trafficPercent"] == before["trafficPercent"]
    rollout_operator.start()
    steps = []
    obj = r.wait(lambda o: steps.append(canary_of(o).get("step")) or "canary" not in o["spec"], "promotion", 150)
    assert all(s is None or s >= 1 for s in steps), f"the rollout went back to step 0: {steps}"
    assert history_of(obj)[-1]["outcome"] == "Promoted"


def test_pause_resume_and_abort(rollout):
    r = rollout(steps=(20, 40, 60), interval="5s")
    r.wait(lambda o: canary_of(o).get("stepStartedAt"), "the canary to start")
    r.annotate("paused")
    r.wait(lambda o: canary_of(o).get("paused") is True, "paused")
    step = canary_of(r.mdep())["step"]
    time.sleep(12)                         # more than two intervals
    assert canary_of(r.mdep())["step"] == step
    assert next(c for c in r.mdep()["status"]["conditions"] if c["type"] == "Progressing")["reason"] == "CanaryPaused"
    r.annotate(None)
    r.wait(lambda o: canary_of(o).get("step", 0) > step, "progress after resume")
    r.annotate("abort")
    obj = r.wait(lambda o: o.get("status", {}).get("phase") == "RolledBack", "abort")
    assert history_of(obj)[-1]["outcome"] == "Aborted"
    assert "mlsd.io/rollout" not in (obj["metadata"].get("annotations") or {})


def test_promote_now(rollout):
    r = rollout(steps=(10, 20, 30), interval="60s")
    r.wait(lambda o: canary_of(o).get("stepStartedAt"), "the canary to start")
    r.annotate("promote")
    obj = r.wait(lambda o: "canary" not in o["spec"], "promotion")
    assert obj["spec"]["model"]["version"] == "2"
    assert history_of(obj)[-1]["reason"] == "promoted by the mlsd.io/rollout annotation"


def test_shadow_agreement_is_measured_without_touching_responses(control_plane, rollout_operator, prometheus, k8s,
                                                                  namespace, models, tmp_path):
    stable = Predictor(models / CASE / "1" / "kserve" / "fp32", "stable", tmp_path)
    shadow = Predictor(models / CASE / "2" / "kserve" / "fp32", "shadow", tmp_path)
    labels = {"namespace": namespace, "model_deployment": "mirrored"}
    prometheus.scrape([(stable.address, labels), (shadow.address, labels)])
    traffic = Traffic(stable, None, lambda: 0, mirror=shadow)
    traffic.start()
    try:
        obj = manifest(name="mirrored", namespace=None, runtime="triton", gateway={"name": "gw"},
                       model={"storageUri": "s3://models/ad/1"},
                       shadow={"model": {"version": "2", "storageUri": "s3://models/ad/2"}, "percent": 100})
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_yaml.dump(obj))
        api = _Apis(k8s[0])
        status = eventually(rollout_operator, lambda: (s := get_mdep(api, namespace, "mirrored").get("status", {}))
                            .get("shadow", {}).get("requests") and s, "a shadow measurement", timeout=90)
        shadow_status = status["shadow"]
        assert shadow_status["version"] == "2" and shadow_status["requests"] > 0
        assert 0 <= shadow_status["predictionDrift"] < 0.5
        assert status["stable"]["trafficPercent"] == 100, "a shadow never takes traffic"
        assert traffic.sent["canary"] == 0 and traffic.sent["mirror"] > 0
    finally:
        traffic.stop()
        stable.stop()
        shadow.stop()


def test_promql_reads_what_the_predictors_served(prometheus, models, tmp_path, namespace):
    """The PromQL builder against a real Prometheus: counts, server errors, latency, scores."""
    from mlsd_operator.rollout import Prometheus, TrackSelector

    server = Predictor(models / CASE / "1" / "kserve" / "fp32", "stable", tmp_path)
    try:
        prometheus.scrape([(server.address, {"namespace": namespace, "model_deployment": "q"})])
        rng = np.random.default_rng(0)
        server.infer(4, rng)               # the series exist before the measured traffic: increase()
        prometheus.wait_scraped(server.address, "mlsd_requests_total")   # needs a first sample
        codes = [server.infer(4, rng) for _ in range(50)]
        bad = urllib.request.Request(f"http://{server.address}/v2/models/{CASE}/infer", data=b'{"inputs": []}',
                                     method="POST", headers={"Content-Type": "application/json"})
        for _ in range(5):                 # client errors: never counted against the model
            try:
                urllib.request.urlopen(bad, timeout=5)
            except urllib.error.HTTPError as error:
                assert 400 <= error.code < 500
        assert codes.count(200) == 50
        reader = Prometheus(prometheus.url)
        selector = TrackSelector(namespace, "q", "1")

        seen = []

        def settled():
            seen.append(reader.track(selector, 60))
            return seen[-1] if seen[-1].requests >= 50 else None

        metrics = eventually(_NoOperator(seen), settled, "Prometheus to scrape the traffic", timeout=30)
        assert 50 <= metrics.requests <= 51 * 1.5     # increase() extrapolates towards the window's edges
        assert metrics.errors == 0
        assert metrics.latency_p99_ms is not None and 0 < metrics.latency_p99_ms < 5000
        (scores,) = metrics.scores.values()
        assert len(scores) == 42
        # One score per row, 4 rows a request: both counters are extrapolated alike.
        assert sum(scores) == pytest.approx(4 * metrics.requests, rel=0.05)
    finally:
        server.stop()


class _NoOperator:
    def __init__(self, seen):
        self.seen = seen

    def log_tail(self) -> str:
        return f"(no operator in this test; last reading: {self.seen[-1:]})"


def test_kserve_canary_steps_the_inference_service(rollout, k8s, namespace):
    """KServe's controller does not run here (it needs its images), so this test plays its part in
    one respect only: it reports the InferenceService and its canary Ready, as KServe would once the
    pods are up. Everything else is real: the operator, the CRD schema, Prometheus and the predictors."""
    custom = k8s[0]
    r = rollout(runtime="kserve")

    def isvc():
        return custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices", "ctr")

    eventually(r.operator, lambda: isvc().get("spec", {}).get("canary"), "the dark canary entry")
    assert isvc()["spec"]["canary"][0]["trafficPercent"] == 0
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PredictorReady", "status": "True"}],
                        "canaryStatuses": [{"name": "v2", "ready": True, "trafficPercent": 0}]}}
    custom.patch_namespaced_custom_object_status("serving.kserve.io", "v1beta1", namespace, "inferenceservices", "ctr",
                                                 ready)
    seen = set()

    def traffic_seen():
        entries = isvc()["spec"].get("canary") or []
        seen.update(e["trafficPercent"] for e in entries)
        return {20, 50} <= seen

    eventually(r.operator, traffic_seen, "canary[].trafficPercent to walk 20 -> 50", timeout=120)
    obj = r.wait(lambda o: "canary" not in o["spec"], "promotion", timeout=120)
    assert history_of(obj)[-1]["outcome"] == "Promoted"
    eventually(r.operator, lambda: "canary" not in isvc()["spec"]
               and isvc()["spec"]["predictor"]["model"]["storageUri"] == "s3://models/ad/2/kserve/fp32",
               "the InferenceService to serve version 2 alone")
