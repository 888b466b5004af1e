"""The canary analysis on tritonserver as it runs (no mlsd_* request series there): real
tritonserver processes started as `mlsd serve` starts them (ad-click-prediction v1 and v2, the
Python-backend layout of the nvidia-pytriton binary) and a third serving a miscalibrated copy of v2
(its probabilities pushed up, p -> p^(1/4): same signature, no errors, fast), real Prometheus
scraping their metrics ports with the labels a cluster's scrape config adds, real requests. The
operator's own query code (`Prometheus.track` with a Triton selector) must see requests, latency and
score histograms; the good canary passes, the miscalibrated one fails on prediction drift (the
verdict that rolls a canary back), and a canary that nobody called is no evidence."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mlsd_contract.api import Analysis, ModelDeployment
from mlsd_operator.rollout import Decision, Prometheus, TrackSelector, analyze
from mlsd_predictors.serve._backends import start_backend
from mlsd_predictors.serve._plan import plan
from mlsd_predictors.servers._triton import TritonServer
from tests.conftest import manifest
from tests._support import free_port
from tests.integration.rollout_harness import CASE, PrometheusServer, infer, rerecord_self_check, shift_probabilities

pytestmark = pytest.mark.serving

NAMESPACE, NAME, REQUESTS, ROWS = "team-a", "ad-ctr", 80, 4


@pytest.fixture
def tracks(models_root: Path, tmp_path: Path):
    mdep = ModelDeployment.model_validate(manifest(
        name=NAME, runtime="triton", gateway={"name": "gw"},
        model={"version": "1", "storageUri": f"file://{models_root / CASE / '1'}"},
        canary={"model": {"version": "2", "storageUri": f"file://{models_root / CASE / '2'}"}, "steps": [50]}))
    backends = []
    try:
        for track in plan(mdep, models_root):
            (tmp_path / track.name).mkdir()
            backend = start_backend(mdep, track, tmp_path / track.name)
            backends.append(backend)
            backend.wait_ready(240)
        yield {b.track.version: b for b in backends}
    finally:
        for backend in backends:
            backend.stop()


@pytest.fixture
def miscalibrated(models_root: Path, tmp_path: Path):
    """v2's Triton repository with its probabilities shifted, served by a tritonserver of its own."""
    repository = tmp_path / "miscalibrated"
    shutil.copytree(models_root / CASE / "2" / "triton" / "fp32", repository)
    (graph,) = repository.glob(f"{CASE}/*/model.onnx")
    shift_probabilities(graph)
    rerecord_self_check(repository)
    server = TritonServer([repository], free_port(), free_port(), free_port(), log_path=tmp_path / "triton-3.log",
                          env={"MLSD_TRACK": "canary"})
    server.start(240)
    yield server
    server.stop()


def test_the_analysis_judges_tritonserver_on_its_own_series(tracks, miscalibrated, tmp_path: Path) -> None:
    (tmp_path / "prometheus").mkdir()
    prometheus = PrometheusServer(tmp_path / "prometheus").start()
    try:
        tracks = {**tracks, "3": miscalibrated}
        addresses = {v: f"127.0.0.1:{b.metrics_port}" for v, b in tracks.items()}
        prometheus.scrape([(address, {"namespace": NAMESPACE, "model_deployment": NAME, "version": version})
                           for version, address in addresses.items()])
        for address in addresses.values():
            prometheus.wait_scraped(address, "nv_inference_request_success")
        rng = np.random.default_rng(3)
        for version, backend in tracks.items():
            statuses = [infer(f"127.0.0.1:{backend.http_port}", ROWS, rng) for _ in range(REQUESTS)]
            assert statuses == [200] * REQUESTS, (version, statuses[:5])
        time.sleep(4)        # two scrapes after the last request

        reader = Prometheus(prometheus.url)
        seen = {v: reader.track(TrackSelector(NAMESPACE, NAME, v, CASE), 120) for v in tracks}
        for version, metrics in seen.items():
            # increase() extrapolates to the window's edges: close to, not exactly, what was sent
            assert REQUESTS * 0.9 <= metrics.requests <= REQUESTS * 1.5, (version, metrics)
            assert metrics.errors == 0, (version, metrics)
            assert metrics.measured["latencyP99Ms"] and metrics.measured["latencyP99Ms"] > 0, (version, metrics)
            assert "click_probability" in metrics.scores, (version, sorted(metrics.scores))
            assert sum(metrics.scores["click_probability"]) >= REQUESTS * ROWS * 0.9, (version, metrics.scores)

        thresholds = Analysis(min_requests=20, max_error_rate=0.01, max_latency_p99_ms=5_000,
                              max_prediction_drift=0.5)
        verdict = analyze(thresholds, seen["1"], seen["2"])
        assert verdict.decision == Decision.PASS, verdict
        assert verdict.latency_p99_ms and verdict.prediction_drift is not None
        shifted = analyze(thresholds, seen["1"], seen["3"])
        assert shifted.decision == Decision.FAIL, shifted
        assert shifted.prediction_drift > thresholds.max_prediction_drift and "drift" in shifted.reason, shifted
        print(f"\nprediction drift (PSI of score histograms) vs stable: good canary {verdict.prediction_drift:.3f}, "
              f"miscalibrated {shifted.prediction_drift:.3f} (limit {thresholds.max_prediction_drift})")

        unseen = reader.track(TrackSelector(NAMESPACE, NAME, "4", CASE), 120)
        lenient = Analysis(min_requests=0)
        idle = analyze(lenient, seen["1"], unseen)
        assert unseen.requests == 0 and idle.decision == Decision.WAIT and "no requests" in idle.reason
    finally:
        prometheus.stop()
