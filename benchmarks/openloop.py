"""Open-loop load on `mlsd serve`: fixed arrival rates from vegeta, whatever the server does, so
queueing shows (a closed-loop client slows down with the server and hides it).

    python -m benchmarks.openloop                       # ad clicks, 1 row and 200 candidates per request
    python -m benchmarks.openloop --rates 100 250 500 1000 --seconds 8 --out /tmp/openloop.md

`mlsd serve` (the real command) serves the ad-click model on one KServe track; vegeta
(hack/vegeta.sh builds it) sends v2 REST requests at each rate, for `--seconds`, to the front door
and, directly, to the predictor process behind it. Request shapes: one impression (1 row) and the
book's ad-ranking request (1 user x 200 candidate ads = 200 rows). Per cell: answered (200), shed
(503, the front door's or predictor's admission), failed (anything else: timeouts, resets, 5xx),
latency percentiles of answered requests, rows/s answered. The sustainable rate of a target and
shape is the highest rate with p99 under 25 ms and nothing shed or failed. The in-process ceiling
is onnxruntime on the same variant in this process (rows/s at the same batch shape, one thread).
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from benchmarks.serving import HOST, ensure_models, free_port, in_process, request_rows, wait_ready
from mlsd_operator import _yaml

CASE = "ad-click-prediction"
SHAPES = {"1 row": 1, "200 candidates": 200}
P99_TARGET_MS = 25.0
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Cell:
    target: str
    shape: str
    rows: int
    rate: int
    sent: int
    answered: int
    shed: int
    failed: int
    p50_ms: float
    p99_ms: float
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.answered * self.rows / self.seconds

    @property
    def sustained(self) -> bool:
        return self.shed == 0 and self.failed == 0 and self.p99_ms < P99_TARGET_MS


def cell_from_report(target: str, shape: str, rows: int, rate: int, seconds: float, report: dict) -> Cell:
    """A vegeta `report -type=json` as a Cell (status code 0 is vegeta's 'no response': a failure)."""
    codes = {int(code): count for code, count in (report.get("status_codes") or {}).items()}
    answered, shed = codes.get(200, 0), codes.get(503, 0) + codes.get(429, 0)
    latencies = report.get("latencies") or {}
    return Cell(target, shape, rows, rate, int(report.get("requests", 0)), answered, shed,
                int(report.get("requests", 0)) - answered - shed, latencies.get("50th", 0) / 1e6,
                latencies.get("99th", 0) / 1e6, seconds)


def sustainable(cells: list[Cell]) -> dict[tuple[str, str], int]:
    """The highest rate per (target, shape) with p99 < 25 ms and nothing shed or failed (0: none)."""
    best: dict[tuple[str, str], int] = {}
    for c in cells:
        key = (c.target, c.shape)
        best.setdefault(key, 0)
        if c.sustained:
            best[key] = max(best[key], c.rate)
    return best


def vegeta() -> str:
    path = subprocess.run([str(REPO / "hack" / "vegeta.sh"), "path"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not Path(path).is_file():
        sys.exit(f"vegeta is missing at {path}: run hack/vegeta.sh build")
    return path


def body(rows: int) -> bytes:
    feeds = request_rows(CASE, rows, np.random.default_rng(rows))
    return json.dumps({"inputs": [
        {"name": name, "datatype": "INT64" if value.dtype == np.int64 else "FP32", "shape": list(value.shape),
         "data": value.ravel().tolist()} for name, value in feeds.items()]}).encode()


def attack(url: str, payload: bytes, rate: int, seconds: float, work: Path) -> dict:
    targets = work / "targets.json"
    targets.write_text(json.dumps({"method": "POST", "url": url, "body": base64.b64encode(payload).decode(),
                                   "header": {"Content-Type": ["application/json"]}}) + "\n")
    results = work / "results.bin"
    subprocess.run([vegeta(), "attack", "-format=json", f"-targets={targets}", f"-rate={rate}/s",
                    f"-duration={seconds}s", "-timeout=5s", f"-output={results}"], check=True)
    report = subprocess.run([vegeta(), "report", "-type=json", str(results)], capture_output=True, text=True,
                            check=True)
    return json.loads(report.stdout)


def ceiling(variant: Path, rows: int, seconds: float = 2.0) -> float:
    """In-process rows/s at this batch shape (onnxruntime, no server)."""
    run, feeds = in_process(CASE, variant), request_rows(CASE, rows, np.random.default_rng(0))
    for _ in range(20):
        run(feeds)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(feeds)
        done += rows
    return done / (time.perf_counter() - started)


def measure(models: Path, rates: list[int], seconds: float, log=print) -> tuple[list[Cell], dict[str, float]]:
    ensure_models(models, [CASE], small=False, log=log)
    variant = models / CASE / "1" / "kserve" / "fp32"
    ceilings = {shape: ceiling(variant, rows) for shape, rows in SHAPES.items()}
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-openloop-") as tmp:
        work = Path(tmp)
        manifest = work / "mdep.yaml"
        manifest.write_text(_yaml.dump({
            "apiVersion": "mlsd.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "ad-ctr"},
            "spec": {"caseStudy": CASE, "runtime": "kserve",
                     "model": {"version": "1", "storageUri": f"file://{models / CASE / '1'}", "precision": "fp32"}}}))
        http = free_port()
        with open(work / "serve.log", "wb") as out:
            serve = subprocess.Popen([sys.executable, "-m", "mlsd_contract.cli", "serve", str(manifest), "--no-build",
                                      f"--port={http}", f"--grpc-port={free_port()}"], stdout=out,
                                     stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://{HOST}:{http}/v2/health/ready", lambda: serve.poll() is None)
            predictor = next(p for p in psutil.Process(serve.pid).children(recursive=True)
                             if "mlsd_predictors.servers.kserve" in " ".join(p.cmdline()))
            direct = next(int(a.split("=", 1)[1]) for a in predictor.cmdline() if a.startswith("--http_port="))
            for shape, rows in SHAPES.items():
                payload = body(rows)
                for target, port in (("front door", http), ("predictor", direct)):
                    for rate in rates:
                        report = attack(f"http://{HOST}:{port}/v2/models/{CASE}/infer", payload, rate, seconds, work)
                        cells.append(cell_from_report(target, shape, rows, rate, seconds, report))
                        log(table([cells[-1]], header=False).strip())
                        time.sleep(1)          # let a shed burst drain before the next rate
        finally:
            serve.terminate()
            serve.wait(30)
    return cells, ceilings


def table(cells: list[Cell], header: bool = True) -> str:
    lines = ["| target | request | offered req/s | answered | shed | failed | p50 ms | p99 ms | rows/s |",
             "|---|---|---|---|---|---|---|---|---|"] if header else []
    lines += [f"| {c.target} | {c.shape} | {c.rate} | {c.answered} | {c.shed} | {c.failed} | {c.p50_ms:.1f} | "
              f"{c.p99_ms:.1f} | {c.rows_per_second:,.0f} |" for c in cells]
    return "\n".join(lines) + "\n"


def summary(cells: list[Cell], ceilings: dict[str, float]) -> str:
    best = sustainable(cells)
    lines = [f"| target | request | sustainable req/s (p99 < {P99_TARGET_MS:.0f} ms, none shed or failed) | "
             "rows/s there | vs in-process ceiling |", "|---|---|---|---|---|"]
    for (target, shape), rate in best.items():
        rows = SHAPES[shape] * rate
        lines.append(f"| {target} | {shape} | {rate} | {rows:,} | {rows / ceilings[shape]:.2f}x of "
                     f"{ceilings[shape]:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.openloop", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[50, 100, 250, 500, 1000])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--models", type=Path, default=Path.home() / ".cache" / "mlsd" / "bench")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    cells, ceilings = measure(args.models, args.rates, args.seconds)
    report = table(cells) + "\n" + summary(cells, ceilings)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
