"""`mlsd serve`'s front door under an open-loop burst (vegeta: a fixed arrival rate, whatever the
server does), then stopped: it sheds what it cannot take with 503 + Retry-After at once, loses and
times out nothing, answers right after the burst, stops within 5 s, and never leaves a track server
behind, not even when it is SIGKILLed."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from ._reference import inputs
from .test_serve import CASE, Serve, manifest

pytestmark = pytest.mark.serving
REPO = Path(__file__).resolve().parents[2]
RATE, SECONDS, MAX_INFLIGHT = 1000, 10, 16


def vegeta() -> str:
    path = subprocess.run([str(REPO / "hack" / "vegeta.sh"), "path"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.access(path, os.X_OK):
        pytest.fail(f"vegeta is missing at {path}: run hack/vegeta.sh build (hack/test.sh does it)")
    return path


def infer_body() -> bytes:
    feeds = inputs(CASE, 1, 5)
    return json.dumps({"inputs": [
        {"name": "sparse_ids", "datatype": "INT64", "shape": [1, 8], "data": feeds["sparse_ids"].ravel().tolist()},
        {"name": "dense", "datatype": "FP32", "shape": [1, 6], "data": feeds["dense"].ravel().tolist()},
    ]}).encode()


def targets(port: int, tmp_path: Path) -> Path:
    target = {"method": "POST", "url": f"http://127.0.0.1:{port}/v2/models/{CASE}/infer",
              "body": base64.b64encode(infer_body()).decode(), "header": {"Content-Type": ["application/json"]}}
    path = tmp_path / "targets.json"
    path.write_text(json.dumps(target) + "\n")
    return path


def attack(port: int, tmp_path: Path) -> dict:
    results = tmp_path / "results.bin"
    subprocess.run([vegeta(), "attack", "-format=json", f"-targets={targets(port, tmp_path)}", f"-rate={RATE}/s",
                    f"-duration={SECONDS}s", "-timeout=5s", f"-output={results}"], check=True, timeout=SECONDS + 30)
    report = subprocess.run([vegeta(), "report", "-type=json", str(results)], capture_output=True, text=True,
                            check=True)
    return json.loads(report.stdout)


@pytest.fixture
def serving(models_root: Path, tmp_path: Path):
    serve = Serve([str(manifest(tmp_path / "mdep.yaml", "kserve", models_root / CASE / "1")),
                   f"--max-inflight={MAX_INFLIGHT}"], tmp_path / "serve.log")
    try:
        serve.wait_ready()
        yield serve
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.wait()


def track_servers(serve: Serve) -> list[psutil.Process]:
    return psutil.Process(serve.process.pid).children(recursive=True)


def test_a_burst_is_shed_at_once_and_nothing_is_lost(serving: Serve, tmp_path: Path) -> None:
    report = attack(serving.http, tmp_path)
    codes = {int(code): count for code, count in report["status_codes"].items()}
    answered, shed = codes.get(200, 0), codes.get(503, 0)
    print(f"front door, {RATE} req/s for {SECONDS}s open loop: {answered} answered, {shed} shed (503), "
          f"p50 {report['latencies']['50th'] / 1e6:.1f} ms, p99 {report['latencies']['99th'] / 1e6:.1f} ms")
    # Every request got an answer: 200, or 503 at once. No timeouts, no resets, no other error.
    assert set(codes) <= {200, 503}, (codes, report.get("errors"))
    assert answered + shed == report["requests"]
    # vegeta paces by the clock: its last tick may or may not fall inside the duration.
    assert report["requests"] >= RATE * SECONDS - RATE // 100, report["requests"]
    assert answered > 0
    assert report["latencies"]["max"] < 5e9, "a request waited as long as the client's timeout: it was queued"
    assert serving.metric("mlsd_frontdoor_shed_requests", protocol="http") == shed
    # The predictor answered everything the front door let through.
    assert serving.metric("mlsd_requests_total", track="stable", code="200") >= answered
    started = time.monotonic()
    response = httpx.post(f"http://127.0.0.1:{serving.http}/v2/models/{CASE}/infer", content=infer_body(),
                          headers={"content-type": "application/json"}, timeout=5)
    recovered = time.monotonic() - started
    assert response.status_code == 200 and recovered < 1.0, (response.status_code, recovered)
    print(f"answered {recovered * 1000:.0f} ms after the burst")


def test_sigterm_under_load_stops_everything_within_5s(serving: Serve, tmp_path: Path) -> None:
    servers = track_servers(serving)
    assert servers, "mlsd serve started no track server"
    load = subprocess.Popen([vegeta(), "attack", "-format=json", f"-targets={targets(serving.http, tmp_path)}",
                             f"-rate={RATE}/s", "-duration=30s", "-timeout=5s", "-output=/dev/null"])
    try:
        time.sleep(3)
        started = time.monotonic()
        serving.process.send_signal(signal.SIGTERM)
        serving.process.wait(10)
        stopped = time.monotonic() - started
    finally:
        load.kill()
        load.wait()
    gone, alive = psutil.wait_procs(servers, timeout=1)
    assert not alive, f"track servers outlived mlsd serve: {alive}"
    assert stopped < 5.0, f"mlsd serve took {stopped:.1f}s to stop under load"
    print(f"stopped under load in {stopped:.1f}s")


def test_a_killed_front_door_takes_its_track_servers_with_it(serving: Serve) -> None:
    servers = track_servers(serving)
    assert servers
    serving.process.send_signal(signal.SIGKILL)
    serving.process.wait(10)
    gone, alive = psutil.wait_procs(servers, timeout=5)
    assert not alive, f"track servers outlived a SIGKILLed mlsd serve: {alive}"
