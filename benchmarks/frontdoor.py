"""What the route costs: `mlsd serve`'s front door vs the predictor behind it, in the same run.

    python -m benchmarks --parts frontdoor
    python -m benchmarks.frontdoor [--quick]

`mlsd serve` (the real command, a subprocess) serves an ad-click ModelDeployment with one KServe
track; the front door does what the HTTPRoute/Envoy hop does in a cluster (pick a track by weight,
forward, count, merge metrics). The same client then calls the front door and, directly, the
predictor process `mlsd serve` started, interleaved, at each concurrency and protocol. The
difference in latency (and CPU per request: front door + predictor vs predictor) is the front
door's cost. A cluster's Gateway (Envoy) is a different proxy; this is the local one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from benchmarks._stats import summarize
from benchmarks.serving import (HOST, client_call, closed_loop, ensure_models, free_port, process_usage, request_rows,
                                wait_ready)
from mlsd_operator import _yaml

CASE = "ad-click-prediction"


@dataclass
class Setup:
    concurrency: list[int] = field(default_factory=lambda: [1, 8])
    protocols: list[str] = field(default_factory=lambda: ["http", "grpc"])
    seconds: float = 1.0
    warmup: float = 0.4
    repeat: int = 3

    @classmethod
    def quick(cls) -> "Setup":
        return cls(concurrency=[1], seconds=0.5, warmup=0.2, repeat=1)


def _flag(cmdline: list[str], name: str) -> int:
    for arg in cmdline:
        if arg.startswith(f"--{name}="):
            return int(arg.split("=", 1)[1])
    raise RuntimeError(f"--{name} not found in {cmdline}")


def run(models: Path, setup: Setup, small: bool, log: Callable[[str], None] = print) -> dict:
    ensure_models(models, [CASE], small, log)
    feeds = request_rows(CASE, 1, np.random.default_rng(0))
    records = []
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-frontdoor-") as tmp:
        manifest = Path(tmp) / "mdep.yaml"
        manifest.write_text(_yaml.dump({
            "apiVersion": "mlsd.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "ad-ctr"},
            "spec": {"caseStudy": CASE, "runtime": "kserve",
                     "model": {"version": "1", "storageUri": f"file://{models / CASE / '1'}", "precision": "fp32"}}}))
        http, grpc = free_port(), free_port()
        with open(Path(tmp) / "serve.log", "wb") as out:
            serve = subprocess.Popen([sys.executable, "-m", "mlsd_contract.cli", "serve", str(manifest), "--no-build",
                                      f"--port={http}", f"--grpc-port={grpc}"], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_ready(f"http://{HOST}:{http}/v2/health/ready", lambda: serve.poll() is None)
            predictor = next(p for p in psutil.Process(serve.pid).children(recursive=True)
                             if "mlsd_predictors.servers.kserve" in " ".join(p.cmdline()))
            cmdline = predictor.cmdline()
            direct = {"http": f"{HOST}:{_flag(cmdline, 'http_port')}", "grpc": f"{HOST}:{_flag(cmdline, 'grpc_port')}"}
            front = {"http": f"{HOST}:{http}", "grpc": f"{HOST}:{grpc}"}
            pids = {"direct": [predictor.pid], "frontdoor": [serve.pid]}     # front door + its predictor
            for run_index in range(setup.repeat):
                for protocol in setup.protocols:
                    for c in setup.concurrency:
                        for path, urls in (("direct", direct), ("frontdoor", front)):
                            result = closed_loop(client_call(protocol, urls[protocol], CASE, feeds), c, setup.warmup,
                                                 setup.seconds, lambda path=path: process_usage(lambda: pids[path]))
                            records.append({"path": path, "protocol": protocol, "concurrency": c, "run": run_index,
                                            **result})
                            log(f"  {path:9s} {protocol:4s} c={c:<2d} run {run_index}: {result['rps']:8.1f} req/s  "
                                f"p50 {result['p50_ms']:6.2f}  p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}")
        finally:
            serve.terminate()
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
    return {"setup": asdict(setup), "records": records, "rows": aggregate(records)}


def aggregate(records: list[dict]) -> list[dict]:
    """Per protocol and concurrency: direct and front-door medians (with spread) and the extra
    latency, median over repeats of the per-repeat difference (both measured back to back)."""
    rows = []
    for protocol in dict.fromkeys(r["protocol"] for r in records):
        for c in sorted({r["concurrency"] for r in records if r["protocol"] == protocol}):
            pairs = {}
            for r in records:
                if r["protocol"] == protocol and r["concurrency"] == c:
                    pairs.setdefault(r["run"], {})[r["path"]] = r
            complete = [p for p in pairs.values() if {"direct", "frontdoor"} <= p.keys()]
            row = {"protocol": protocol, "concurrency": c, "runs": len(complete)}
            for path in ("direct", "frontdoor"):
                for metric in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request"):
                    row[f"{path}_{metric}"] = summarize(p[path][metric] for p in complete)
            for metric in ("p50_ms", "p99_ms", "cpu_ms_per_request"):
                row[f"extra_{metric}"] = summarize(p["frontdoor"][metric] - p["direct"][metric] for p in complete)
            row["x_direct_rps"] = summarize(p["frontdoor"]["rps"] / p["direct"]["rps"] for p in complete
                                            if p["direct"]["rps"])
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", type=Path)
    args = parser.parse_args()
    from benchmarks.serving import default_models
    result = run(args.models or default_models(args.quick), Setup.quick() if args.quick else Setup(), args.quick)
    from benchmarks._report import frontdoor_markdown
    print("\n".join(frontdoor_markdown(result)))


if __name__ == "__main__":
    main()
