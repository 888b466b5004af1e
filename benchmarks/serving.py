"""Serving: requests/s, p50/p95/p99, CPU time per request and RSS per case study, in one run.

    python -m benchmarks --parts serving            # the whole suite's serving part (report + plots)
    python -m benchmarks.serving [--quick]          # this part alone, printed

Rows, on the same model repository and the same one-row requests (closed loop, one tritonclient
per worker thread, 127.0.0.1):
- `kserve`: the mlsd KServe predictor (`python -m mlsd_predictors.servers.kserve`), HTTP and gRPC;
- `triton`: a real tritonserver (the nvidia-pytriton binary; ONNX models through the
  Python-backend onnxruntime shim, ANN steps on the Python backend), HTTP and gRPC;
- `onnxruntime`: the same graphs (and ANN index) called in-process on the same batches: no
  network, no server. That is the ceiling every served row is divided by.

The matrix (`Matrix`): fp32 at every concurrency x protocol; fp16 and int8 at one concurrency
over HTTP; batching on (the build's configs: Triton's dynamic batcher, 2 ms queue delay; KServe's
opportunistic micro-batching) vs off (Triton without `dynamic_batching`, KServe
`--max_batch_size=1`) at the highest concurrency over HTTP. Each server configuration is started
once; its cells then run `repeat` times, interleaved (cell A, B, C, A, B, C, ...) so slow drift of
a shared machine hits every row alike. Every cell warms up (connections, first executions) before
its measured window.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from benchmarks._stats import percentiles, summarize
from tests._support import free_port

CASES = ("ad-click-prediction", "harmful-content", "visual-search", "video-recommendation")
HOST = "127.0.0.1"
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
CEILING = ("onnxruntime", "in-process")


@dataclass
class Matrix:
    cases: list[str] = field(default_factory=lambda: list(CASES))
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    protocols: list[str] = field(default_factory=lambda: ["http", "grpc"])
    precisions: list[str] = field(default_factory=lambda: ["fp16", "int8"])   # besides fp32
    precision_concurrency: int = 8
    batching_concurrency: int = 32
    seconds: float = 1.0          # measured window per cell
    warmup: float = 0.4           # per cell, before the window
    repeat: int = 3

    @classmethod
    def quick(cls) -> "Matrix":
        return cls(cases=["ad-click-prediction"], concurrency=[1, 8], precisions=["int8"],
                   precision_concurrency=8, batching_concurrency=8, seconds=0.5, warmup=0.2, repeat=1)

    def trimmed(self) -> list[str]:
        return [f"fp16/int8 only at c={self.precision_concurrency} over HTTP (fp32 has the full "
                f"{'/'.join(map(str, self.concurrency))} x {'/'.join(self.protocols)} matrix)",
                f"batching off only at c={self.batching_concurrency} over HTTP, fp32",
                "one model instance per server, one-row requests (no client-side batches)"]


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


def in_process(case: str, variant: Path) -> Callable[[dict[str, np.ndarray]], object]:
    """The predictor's compute path without a server: the ceiling."""
    import onnxruntime as ort
    from usearch.index import Index

    from mlsd_predictors.servers._ann_lookup import search

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


# -- measuring one cell ---------------------------------------------------------------------------

def process_usage(pids: Callable[[], list[int]]) -> tuple[float, float]:
    """CPU seconds (user + system) and RSS bytes of some processes and all their children."""
    cpu = rss = 0.0
    for pid in pids():
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


def closed_loop(make_call: Callable[[], Callable[[], object]], concurrency: int, warmup: float, seconds: float,
                usage: Callable[[], tuple[float, float]]) -> dict:
    """`concurrency` workers call back to back; only calls that start and end inside the measured
    window (after `warmup`) count. `usage` is sampled at both ends of the window."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_barrier = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def worker() -> None:
        nonlocal errors
        try:
            call = make_call()
        finally:
            start_barrier.wait()
        mine, failed = [], 0
        begin, end = window["begin"], window["end"]
        while True:
            started = time.perf_counter()
            if started >= end:
                break
            try:
                call()
            except Exception:  # noqa: BLE001 - counted and reported in the errors column
                if started >= begin:
                    failed += 1
                continue
            finished = time.perf_counter()
            if started >= begin and finished <= end:
                mine.append(finished - started)
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["begin"], window["end"] = now + warmup, now + warmup + seconds
    start_barrier.wait()
    time.sleep(max(0.0, window["begin"] - time.perf_counter()))
    cpu0, _ = usage()
    time.sleep(max(0.0, window["end"] - time.perf_counter()))
    cpu1, rss = usage()
    for t in threads:
        t.join(60)
    p50, p95, p99 = percentiles([1000 * x for x in latencies])
    count = len(latencies)
    return {"requests": count, "rps": count / seconds, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "cpu_ms_per_request": 1000 * (cpu1 - cpu0) / count if count else float("nan"),
            "rss_mib": rss / 2**20, "errors": errors}


def client_call(protocol: str, url: str, model: str, feeds: dict[str, np.ndarray]) -> Callable[[], Callable[[], object]]:
    def make() -> Callable[[], object]:
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


# -- servers --------------------------------------------------------------------------------------

def wait_ready(url: str, alive: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server exited before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def without_dynamic_batching(repository: Path, target: Path) -> Path:
    """A copy of a Triton repository whose models execute each request alone (no `dynamic_batching`)."""
    import shutil

    from mlsd_predictors.pull import parse_config, write_config

    shutil.copytree(repository, target, symlinks=True)
    for config_path in target.glob("*/config.pbtxt"):
        config = parse_config(config_path)
        if config.HasField("dynamic_batching"):
            config.ClearField("dynamic_batching")
            write_config(config_path, config)
    return target


class Servers:
    """The KServe predictor and a tritonserver on the same variant, started in parallel."""

    def __init__(self, case: str, models: Path, precision: str, batching: bool, workdir: Path):
        self.case, self.workdir = case, workdir
        self.variant = models / case / "1" / "kserve" / precision
        tag = f"{case}-{precision}-{'batch' if batching else 'nobatch'}"
        self.kserve_http, self.kserve_grpc = free_port(), free_port()
        self.kserve_argv = [sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={case}",
                            f"--model_name={case}", f"--model_dir={self.variant}", f"--host={HOST}",
                            f"--http_port={self.kserve_http}", f"--grpc_port={self.kserve_grpc}",
                            *([] if batching else ["--max_batch_size=1"])]
        self.kserve_log = workdir / f"kserve-{tag}.log"
        repository = models / case / "1" / "triton" / precision
        if not batching:
            repository = without_dynamic_batching(repository, workdir / f"repo-{tag}")
        from mlsd_predictors.servers._triton import TritonServer
        self.triton = TritonServer([repository], free_port(), free_port(), free_port(), host=HOST,
                                   workdir=workdir / f"triton-{tag}", log_path=workdir / f"triton-{tag}.log")
        self.kserve: subprocess.Popen | None = None

    def start(self) -> "Servers":
        with open(self.kserve_log, "wb") as log:
            self.kserve = subprocess.Popen(self.kserve_argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with ThreadPoolExecutor(2) as pool:
            k = pool.submit(wait_ready, f"http://{HOST}:{self.kserve_http}/v2/models/{self.case}/ready",
                            lambda: self.kserve.poll() is None)
            t = pool.submit(self.triton.start)
            k.result()
            t.result()
        return self

    def triton_version(self) -> str:
        try:
            with urllib.request.urlopen(f"http://{self.triton.http_url}/v2", timeout=5) as r:
                return json.loads(r.read())["version"]
        except (OSError, KeyError, ValueError):
            return "unknown"

    def endpoints(self) -> dict[tuple[str, str], tuple[str, list[int]]]:
        """(runtime, protocol) -> (url, pids whose CPU/RSS the cell charges to the server)."""
        kserve_pids = [self.kserve.pid] if self.kserve else []
        triton_pids = [self.triton.process.pid] if self.triton.process else []
        return {("kserve", "http"): (f"{HOST}:{self.kserve_http}", kserve_pids),
                ("kserve", "grpc"): (f"{HOST}:{self.kserve_grpc}", kserve_pids),
                ("triton", "http"): (self.triton.http_url, triton_pids),
                ("triton", "grpc"): (self.triton.grpc_url, triton_pids)}

    def stop(self) -> None:
        if self.kserve is not None and self.kserve.poll() is None:
            self.kserve.send_signal(signal.SIGTERM)
            try:
                self.kserve.wait(20)
            except subprocess.TimeoutExpired:
                self.kserve.kill()
                self.kserve.wait()
        self.triton.stop()


# -- the matrix -----------------------------------------------------------------------------------

def ensure_models(models: Path, cases: list[str], small: bool, log: Callable[[str], None] = print) -> None:
    for case in cases:
        if not (models / case / "1" / "model-card.json").is_file():
            log(f"building {case} v1 into {models} ({'small' if small else 'full size'}) ...")
            subprocess.run([sys.executable, "-m", "mlsd_contract.cli", "build", case, "--version", "1",
                            "--out", str(models), *(["--small"] if small else [])], check=True,
                           stdout=subprocess.DEVNULL)


def plan(matrix: Matrix) -> list[tuple[str, bool, list[tuple[str, str, int]]]]:
    """(precision, batching, [(runtime, protocol, concurrency)]) per server configuration, per case."""
    served = [(r, p, c) for r in ("kserve", "triton") for p in matrix.protocols for c in matrix.concurrency]
    configs = [("fp32", True, served)]
    configs += [(precision, True, [(r, "http", matrix.precision_concurrency) for r in ("kserve", "triton")])
                for precision in matrix.precisions]
    configs.append(("fp32", False, [(r, "http", matrix.batching_concurrency) for r in ("kserve", "triton")]))
    return configs


def bench_case(case: str, models: Path, matrix: Matrix, workdir: Path, env: dict,
               log: Callable[[str], None] = print) -> list[dict]:
    records: list[dict] = []
    feeds = request_rows(case, 1, np.random.default_rng(0))

    def record(precision: str, batching: bool, runtime: str, protocol: str, concurrency: int, run: int,
               result: dict) -> None:
        row = {"case": case, "precision": precision, "batching": batching, "runtime": runtime, "protocol": protocol,
               "concurrency": concurrency, "run": run, **result}
        records.append(row)
        log(f"  {case:21s} {precision:4s} {'batch' if batching else 'nobatch':7s} {runtime:11s} {protocol:10s} "
            f"c={concurrency:<2d} run {run}: {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.2f}  "
            f"p99 {result['p99_ms']:7.2f} ms  cpu {result['cpu_ms_per_request']:.3f} ms/req  "
            f"rss {result['rss_mib']:.0f} MiB  errors {result['errors']}")

    # The ceiling: every concurrency any served row of that precision uses.
    me = os.getpid()
    for precision in ["fp32", *matrix.precisions]:
        run_graph = in_process(case, models / case / "1" / "kserve" / precision)
        levels = sorted(set(matrix.concurrency if precision == "fp32" else [])
                        | {matrix.precision_concurrency} | ({matrix.batching_concurrency} if precision == "fp32" else set()))
        for run in range(matrix.repeat):
            for c in levels:
                record(precision, True, *CEILING, c, run,
                       closed_loop(lambda: lambda: run_graph(feeds), c, matrix.warmup, matrix.seconds,
                                   lambda: process_usage(lambda: [me])))

    for precision, batching, cells in plan(matrix):
        servers = Servers(case, models, precision, batching, workdir)
        try:
            servers.start()
            env.setdefault("tritonserver_reported", servers.triton_version())
            endpoints = servers.endpoints()
            for run in range(matrix.repeat):
                for runtime, protocol, c in cells:
                    url, pids = endpoints[(runtime, protocol)]
                    record(precision, batching, runtime, protocol, c, run,
                           closed_loop(client_call(protocol, url, case, feeds), c, matrix.warmup, matrix.seconds,
                                       lambda pids=pids: process_usage(lambda: pids)))
        finally:
            servers.stop()
    return records


def run(models: Path, matrix: Matrix, small: bool, log: Callable[[str], None] = print) -> dict:
    ensure_models(models, matrix.cases, small, log)
    env: dict = {}
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-serving-") as tmp:
        for case in matrix.cases:
            records += bench_case(case, models, matrix, Path(tmp), env, log)
    return {"matrix": asdict(matrix), "trimmed": matrix.trimmed(), "models": str(models),
            "model_size": "small" if small else "full", "records": records, "rows": aggregate(records),
            "tritonserver_reported": env.get("tritonserver_reported")}


# -- aggregation ----------------------------------------------------------------------------------

METRICS = ("rps", "p50_ms", "p95_ms", "p99_ms", "cpu_ms_per_request", "rss_mib")


def aggregate(records: list[dict]) -> list[dict]:
    """One row per (case, precision, batching, runtime, protocol, concurrency): median and spread of
    each metric over the repeats, and the median requests/s as a ratio to the in-process ceiling
    (same case, precision, concurrency) and to tritonserver (same case, precision, batching,
    protocol, concurrency), both measured in the same run."""
    keys = ("case", "precision", "batching", "runtime", "protocol", "concurrency")
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    rows = []
    for key, runs in groups.items():
        row = dict(zip(keys, key, strict=True))
        row["runs"] = len(runs)
        row["errors"] = sum(r["errors"] for r in runs)
        for metric in METRICS:
            row[metric] = summarize(r[metric] for r in runs)
        rows.append(row)
    index = {tuple(r[k] for k in keys): r for r in rows}
    for row in rows:
        ceiling = index.get((row["case"], row["precision"], True, *CEILING, row["concurrency"]))
        triton = index.get((row["case"], row["precision"], row["batching"], "triton", row["protocol"], row["concurrency"]))
        rps = row["rps"]["median"]
        row["x_ceiling"] = rps / ceiling["rps"]["median"] if ceiling and ceiling["rps"]["median"] else None
        row["x_triton"] = rps / triton["rps"]["median"] if triton and triton["rps"]["median"] else None
    order = {c: i for i, c in enumerate(CASES)}
    runtime_order = {"onnxruntime": 0, "kserve": 1, "triton": 2}
    rows.sort(key=lambda r: (order.get(r["case"], 9), r["precision"] != "fp32", r["precision"], not r["batching"],
                             r["concurrency"], runtime_order[r["runtime"]], r["protocol"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="small models, one case, tiny matrix")
    parser.add_argument("--small", action="store_true", help="the small models (full matrix)")
    parser.add_argument("--cases", nargs="+", choices=CASES)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    matrix = Matrix.quick() if args.quick else Matrix()
    matrix.cases = args.cases or matrix.cases
    matrix.repeat = args.repeat or matrix.repeat
    matrix.seconds = args.seconds or matrix.seconds
    small = args.quick or args.small
    models = args.models or default_models(small)
    result = run(models, matrix, small=small)
    from benchmarks._report import serving_markdown
    print("\n".join(serving_markdown(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def default_models(small: bool) -> Path:
    return Path.home() / ".cache" / "mlsd" / ("bench-small" if small else "bench")


if __name__ == "__main__":
    main()
