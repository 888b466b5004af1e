"""Issue 6's benchmark: requests/s and p50/p99 latency per case study, measured in one run.

    python -m benchmarks.serving [--models DIR] [--small] [--seconds 3] [--cases ad-click-prediction ...]

For each case study and precision (fp32, int8) it starts the mlsd KServe predictor and a real
tritonserver (the pytriton binary: ONNX models through the Python-backend onnxruntime shim) on
127.0.0.1, then drives each with tritonclient over HTTP and gRPC at concurrency 1 and 16
(one-row requests, closed loop, one client per worker thread). In-process onnxruntime (the same
graphs and ANN index, no network, no server) is the ceiling. It prints the table and the ratios:
KServe / tritonserver throughput on the same model, protocol and load; int8 / fp32; gRPC / HTTP;
each runtime / the in-process ceiling.

Caveat for small machines: the load generator shares the CPU with the server under test, and
both servers run one model instance. Compare ratios from the same run, not absolute numbers
across machines. Missing model versions are built first (`--small` for the quick size).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from usearch.index import Index

from mlsd_predictors.servers._ann_lookup import search
from mlsd_predictors.servers._triton import TritonServer

CASES = ("ad-click-prediction", "harmful-content", "visual-search", "video-recommendation")
PRECISIONS = ("fp32", "int8")
CONCURRENCY = (1, 16)
HOST = "127.0.0.1"
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def request_rows(case: str, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if case == "ad-click-prediction":
        return {"sparse_ids": rng.integers(0, 1_000_000, (rows, 8)).astype(np.int64),
                "dense": rng.lognormal(1.0, 1.0, (rows, 6)).astype(np.float32)}
    if case == "harmful-content":
        return {"token_ids": rng.integers(0, 2**32, (rows, 32)).astype(np.int64),
                "image": rng.random((rows, 3, 32, 32), dtype=np.float32)}
    if case == "visual-search":
        return {"image": rng.random((rows, 3, 32, 32), dtype=np.float32)}
    return {"user_id": rng.integers(0, 500, (rows, 1)).astype(np.int64),
            "user_features": rng.random((rows, 15), dtype=np.float32)}


def in_process(case: str, variant: Path) -> Callable[[dict[str, np.ndarray]], dict]:
    """The predictor's compute path without a server: the ceiling."""
    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(variant / name), providers=["CPUExecutionProvider"])

    card = json.loads((variant / "model-card.json").read_text())
    if case in ("ad-click-prediction", "harmful-content"):
        graph = session("model.onnx")
        return lambda feeds: graph.run(None, feeds)
    if case == "visual-search":
        graph, index = session("model.onnx"), Index.restore(str(variant / "catalogue.usearch"), view=True)
        k = card["training"]["top_k"]
        return lambda feeds: search(index, graph.run(["embedding"], feeds)[0], k)
    user, ranker = session("retrieval.onnx"), session("model.onnx")
    index, k = Index.restore(str(variant / "videos.usearch"), view=True), card["training"]["candidates"]

    def recommend(feeds):
        candidates, _ = search(index, user.run(["user_embedding"], feeds)[0], k)
        return ranker.run(["scores"], {**feeds, "candidate_ids": candidates})

    return recommend


@dataclass
class Cell:
    case: str
    precision: str
    runtime: str       # kserve | triton | onnxruntime
    protocol: str      # http | grpc | in-process
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def closed_loop(make_call: Callable[[], Callable[[], None]], concurrency: int, seconds: float) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        call = make_call()
        mine, failed = [], 0
        try:
            call()   # warm-up (connection, first execution)
        except Exception:  # noqa: BLE001 - counted, reported in the table
            failed += 1
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                call()
            except Exception:  # noqa: BLE001 - counted, reported in the table
                failed += 1
                continue
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            errors += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - started), latencies, errors


def client_call(protocol: str, url: str, model: str, feeds: dict[str, np.ndarray]) -> Callable[[], Callable[[], None]]:
    def make() -> Callable[[], None]:
        if protocol == "http":
            import tritonclient.http as module
            client = module.InferenceServerClient(url, network_timeout=60)
        else:
            import tritonclient.grpc as module
            client = module.InferenceServerClient(url)
        inputs = []
        for name, array in feeds.items():
            tensor = module.InferInput(name, list(array.shape), DATATYPES[array.dtype])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        return lambda: client.infer(model, inputs)
    return make


def measure(case, precision, runtime, protocol, concurrency, make_call, seconds) -> Cell:
    rps, latencies, errors = closed_loop(make_call, concurrency, seconds)
    q = np.percentile(latencies, [50, 99]) * 1000 if latencies else (float("nan"),) * 2
    cell = Cell(case, precision, runtime, protocol, concurrency, rps, float(q[0]), float(q[1]), errors)
    print(f"  {case:21s} {precision:4s} {runtime:11s} {protocol:10s} c={concurrency:<2d} "
          f"{rps:8.1f} req/s  p50 {cell.p50_ms:7.2f} ms  p99 {cell.p99_ms:7.2f} ms  errors {errors}", flush=True)
    return cell


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready")


def ensure_models(models: Path, cases: list[str], small: bool) -> None:
    for case in cases:
        if not (models / case / "1" / "model-card.json").is_file():
            print(f"building {case} v1 into {models} ({'small' if small else 'full size'}) ...", flush=True)
            subprocess.run([sys.executable, "-m", "mlsd_operator", "build", case, "--version", "1",
                            "--out", str(models), *(["--small"] if small else [])], check=True)


def bench_case(case: str, models: Path, seconds: float, workdir: Path) -> list[Cell]:
    cells: list[Cell] = []
    feeds = request_rows(case, 1, np.random.default_rng(0))
    for precision in PRECISIONS:
        variant = models / case / "1" / "kserve" / precision
        run = in_process(case, variant)
        for c in CONCURRENCY:
            cells.append(measure(case, precision, "onnxruntime", "in-process", c, lambda: lambda: run(feeds), seconds))
        http, grpc = free_port(), free_port()
        with open(workdir / f"kserve-{case}-{precision}.log", "wb") as log:
            kserve = subprocess.Popen(
                [sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={case}", f"--model_name={case}",
                 f"--model_dir={variant}", f"--host={HOST}", f"--http_port={http}", f"--grpc_port={grpc}"],
                stdout=log, stderr=subprocess.STDOUT)
        triton = TritonServer([models / case / "1" / "triton" / precision], free_port(), free_port(), free_port(),
                              host=HOST, workdir=workdir / f"triton-{case}-{precision}",
                              log_path=workdir / f"triton-{case}-{precision}.log")
        try:
            wait_ready(f"http://{HOST}:{http}/v2/models/{case}/ready", kserve)
            triton.start()
            for runtime, urls in (("kserve", (f"{HOST}:{http}", f"{HOST}:{grpc}")),
                                  ("triton", (triton.http_url, triton.grpc_url))):
                for protocol, url in zip(("http", "grpc"), urls, strict=True):
                    for c in CONCURRENCY:
                        cells.append(measure(case, precision, runtime, protocol, c,
                                             client_call(protocol, url, case, feeds), seconds))
        finally:
            kserve.send_signal(signal.SIGTERM)
            kserve.wait(20)
            triton.stop()
    return cells


def ratios(cells: list[Cell]) -> list[str]:
    by = {(c.case, c.precision, c.runtime, c.protocol, c.concurrency): c for c in cells}
    lines = []
    for case in dict.fromkeys(c.case for c in cells):
        for precision in PRECISIONS:
            for protocol in ("http", "grpc"):
                for conc in CONCURRENCY:
                    k, t = by.get((case, precision, "kserve", protocol, conc)), by.get((case, precision, "triton", protocol, conc))
                    ceiling = by.get((case, precision, "onnxruntime", "in-process", conc))
                    if k and t and ceiling and t.rps and ceiling.rps:
                        lines.append(f"{case:21s} {precision:4s} {protocol:4s} c={conc:<2d} kserve/triton {k.rps / t.rps:5.2f}x"
                                     f"   kserve/ceiling {k.rps / ceiling.rps:5.2f}   triton/ceiling {t.rps / ceiling.rps:5.2f}")
        for runtime, protocol in (("onnxruntime", "in-process"), ("kserve", "http"), ("kserve", "grpc"), ("triton", "grpc")):
            for conc in CONCURRENCY:
                f32, i8 = by.get((case, "fp32", runtime, protocol, conc)), by.get((case, "int8", runtime, protocol, conc))
                if f32 and i8 and f32.rps:
                    lines.append(f"{case:21s} int8/fp32 {runtime:11s} {protocol:10s} c={conc:<2d} {i8.rps / f32.rps:5.2f}x")
        for runtime in ("kserve", "triton"):
            for conc in CONCURRENCY:
                h, g = by.get((case, "fp32", runtime, "http", conc)), by.get((case, "fp32", runtime, "grpc", conc))
                if h and g and h.rps:
                    lines.append(f"{case:21s} grpc/http {runtime:6s} fp32 c={conc:<2d} {g.rps / h.rps:5.2f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("MLSD_MODELS_DIR", Path.home() / ".cache/mlsd/bench")))
    parser.add_argument("--small", action="store_true", help="build missing models at the small size")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--json", type=Path, default=None, help="also write the cells as JSON")
    args = parser.parse_args()
    ensure_models(args.models, args.cases, args.small)
    print(f"cpu cores: {os.cpu_count()}  seconds per cell: {args.seconds}", flush=True)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-") as tmp:
        for case in args.cases:
            cells += bench_case(case, args.models, args.seconds, Path(tmp))
    print("\nratios (same run, same machine):")
    for line in ratios(cells):
        print("  " + line)
    if args.json:
        args.json.write_text(json.dumps([c.__dict__ for c in cells], indent=1))
    failed = sum(c.errors for c in cells)
    if failed:
        print(f"\n{failed} requests failed (see the errors column)")


if __name__ == "__main__":
    main()
