"""`mlsd serve FILE`: the traffic split and shadow mirroring a cluster would apply, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from tests._support import free_port
from ._reference import client, infer_inputs, inputs, reference

pytestmark = pytest.mark.serving
CASE = "ad-click-prediction"
REQUESTS = 2000


def manifest(path: Path, runtime: str, stable: Path, canary: Path | None = None, shadow: Path | None = None,
             shadow_percent: int = 50) -> Path:
    lines = ["apiVersion: mlsd.io/v1alpha1", "kind: ModelDeployment", "metadata: {name: ad-ctr}", "spec:",
             f"  caseStudy: {CASE}", f"  runtime: {runtime}",
             f'  model: {{version: "{stable.name}", storageUri: "file://{stable}", precision: fp32}}',
             "  batching: {maxBatchSize: 32, maxLatencyMs: 1}"]
    if canary is not None:
        lines += [f'  canary: {{model: {{version: "{canary.name}", storageUri: "file://{canary}", precision: fp32}},'
                  " steps: [10, 50]}"]
    if shadow is not None:
        lines += [f'  shadow: {{model: {{version: "{shadow.name}", storageUri: "file://{shadow}", precision: fp32}},'
                  f" percent: {shadow_percent}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class Serve:
    def __init__(self, args: list[str], log: Path) -> None:
        self.http, self.grpc = free_port(), free_port()
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlsd_contract.cli", "serve", *args, f"--port={self.http}", f"--grpc-port={self.grpc}"],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mlsd serve exited {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"mlsd serve not ready:\n{self.log.read_text()[-4000:]}")

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.http}/metrics", timeout=10).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name in (name, f"{name}_total") and all(s.labels.get(k) == v for k, v in labels.items()))

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"mlsd serve did not stop on Ctrl-C:\n{self.log.read_text()[-3000:]}")


def test_split_and_mirror_on_triton(models_root: Path, tmp_path: Path) -> None:
    """Canary at 30% (--canary-percent), shadow mirrored at 50%: 2,000 requests through the front door."""
    versions = [models_root / CASE / str(v) for v in (1, 2, 3)]
    serve = Serve([str(manifest(tmp_path / "mdep.yaml", "triton", *versions)), "--canary-percent=30", "--no-build"],
                  tmp_path / "serve.log")
    try:
        serve.wait_ready()
        feeds = inputs(CASE, 1, 21)
        answers = {v.name: reference(CASE, v / "kserve" / "fp32", feeds)["click_probability"] for v in versions}
        assert not np.allclose(answers["1"], answers["2"]) and not np.allclose(answers["1"], answers["3"])
        front = client(httpclient, f"127.0.0.1:{serve.http}")
        served = {"1": 0, "2": 0}
        for _ in range(REQUESTS):
            got = front.infer(CASE, infer_inputs(httpclient, feeds)).as_numpy("click_probability")
            match = [v for v in ("1", "2") if np.allclose(got, answers[v], rtol=1e-4, atol=1e-6)]
            assert match, f"response {got} is neither the stable nor the canary answer (shadow leaked?)"
            served[match[0]] += 1
        canary_share = served["2"] / REQUESTS * 100
        assert abs(canary_share - 30) <= 3, served
        # What the tracks' own tritonservers counted, merged by the front door's /metrics.
        counted = {t: serve.metric("nv_inference_request_success", model=CASE, track=t) for t in ("stable", "canary")}
        assert counted == {"stable": served["1"], "canary": served["2"]}
        deadline = time.monotonic() + 20
        while serve.metric("nv_inference_request_success", model=CASE, track="shadow") < REQUESTS * 0.5:
            assert time.monotonic() < deadline, "shadow did not receive its mirrored share"
            time.sleep(0.2)
        assert abs(serve.metric("nv_inference_request_success", model=CASE, track="shadow") - REQUESTS * 0.5) <= 1
        # Agreement measured per mirrored request: v3 answers differently from v1/v2, never identically.
        while serve.metric("mlsd_shadow_abs_difference_count", version="3", output="click_probability") < REQUESTS * 0.5:
            assert time.monotonic() < deadline, "mirrored answers were not compared"
            time.sleep(0.2)
        compared = serve.metric("mlsd_shadow_abs_difference_count", version="3", output="click_probability")
        identical = serve.metric("mlsd_shadow_abs_difference_bucket", version="3", output="click_probability", le="0.0")
        assert compared == REQUESTS * 0.5 and identical == 0
        # gRPC through the front door: same split machinery, answers from stable or canary only.
        grpc_front = client(grpcclient, f"127.0.0.1:{serve.grpc}")
        for _ in range(20):
            got = grpc_front.infer(CASE, infer_inputs(grpcclient, feeds)).as_numpy("click_probability")
            assert any(np.allclose(got, answers[v], rtol=1e-4, atol=1e-6) for v in ("1", "2"))
        assert serve.metric("mlsd_frontdoor_requests", protocol="grpc") == 20
        assert serve.metric("mlsd_prediction_score_count", track="shadow", model=CASE) >= REQUESTS * 0.5
    finally:
        serve.interrupt()
    assert serve.process.returncode == 0, serve.log.read_text()[-2000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{serve.http}/v2/health/live", timeout=2)


def test_kserve_split_and_build_missing(models_root: Path, tmp_path: Path) -> None:
    """The KServe runtime with a canary from the manifest's first step (10%); a version that does not
    exist yet is built by `mlsd serve --small` first."""
    stable = models_root / CASE / "1"
    canary = tmp_path / "models" / CASE / "7"
    serve = Serve([str(manifest(tmp_path / "mdep.yaml", "kserve", stable, canary)), "--small"], tmp_path / "serve.log")
    try:
        serve.wait_ready(timeout=400)
        assert (canary / "kserve" / "fp32" / "model-card.json").is_file()
        front = client(httpclient, f"127.0.0.1:{serve.http}")
        feeds = inputs(CASE, 2, 3)
        for _ in range(500):
            front.infer(CASE, infer_inputs(httpclient, feeds))
        counts = {t: serve.metric("mlsd_requests_total", track=t, code="200") for t in ("stable", "canary")}
        assert counts == {"stable": 450, "canary": 50}
    finally:
        serve.interrupt()
    assert serve.process.returncode == 0
