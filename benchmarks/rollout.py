"""A real rollout and a real rollback, timed, with the `kubectl get mdep -w` a user would watch.

    python -m benchmarks --parts rollout            # within the suite (report)
    python -m benchmarks.rollout [--quick]          # this part alone, printed

Real parts: the local control plane with kwok nodes, the operator (subprocess), Debian's
Prometheus scraping two KServe predictor processes on loopback, and generated traffic split as the
route says. Version 2 is a good retrain; version 3 is version 2 with its probabilities pushed up
(p -> p^(1/4)): healthy, fast, and miscalibrated. Intervals are compressed (`Timings`); the logic is
the production one. The time from the canary spec to the outcome has a floor set by the analysis
timings (a promotion needs one passed analysis per step, each after `interval`; a rollback needs
`failureLimit` failed ones); the report prints the floor next to the measured time.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlsd_operator import _yaml
from mlsd_devcluster import ControlPlane

NAMESPACE, NAME = "demo", "ad-ctr"


@dataclass
class Timings:
    interval_s: int = 10
    steps: list[int] = field(default_factory=lambda: [20, 50])
    tick_s: float = 1.0             # MLSD_ROLLOUT_TICK_SECONDS: how often the operator checks a rollout
    scrape_s: float = 1.0           # Prometheus scrape and evaluation interval
    traffic_rps: float = 40.0       # generated requests/s (4 rows each), split as the route says
    min_requests: int = 20
    max_error_rate: float = 0.01
    max_latency_p99_ms: int = 1000
    max_prediction_drift: float = 0.5
    failure_limit: int = 2

    @classmethod
    def quick(cls) -> "Timings":
        return cls(interval_s=3, steps=[50], min_requests=10, failure_limit=1)

    def analysis(self) -> dict:
        return {"minRequests": self.min_requests, "maxErrorRate": self.max_error_rate,
                "maxLatencyP99Ms": self.max_latency_p99_ms, "maxPredictionDrift": self.max_prediction_drift,
                "failureLimit": self.failure_limit}

    def floor_s(self, outcome: str) -> float:
        return self.interval_s * (len(self.steps) if outcome == "Promoted" else self.failure_limit)


def _status(plane) -> dict:
    out = plane.kubectl("get", "mdep", NAME, "-n", NAMESPACE, "-o", "yaml").stdout
    return _yaml.load_all_text(out)[0]


def _wait(plane, predicate, timeout: float = 300, first_traffic: list | None = None) -> float:
    """Seconds until `predicate(object)`; `first_traffic` gets the seconds until the canary first
    had a non-zero share (a new canary starts dark until its pods are available)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        obj = _status(plane)
        share = ((obj.get("status") or {}).get("canary") or {}).get("trafficPercent") or 0
        if first_traffic is not None and share and not first_traffic:
            first_traffic.append(time.monotonic() - started)
        if predicate(obj):
            return time.monotonic() - started
        time.sleep(0.25)
    raise TimeoutError("rollout did not finish")


def run(timings: Timings, log=print) -> dict:
    from tests.conftest import manifest
    from tests.integration.operator_harness import OperatorProcess, install_crds
    from tests.integration.rollout_harness import CASE, Predictor, PrometheusServer, Traffic, build_models, shifted_variant

    rows = []
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-rollout-") as tmp, \
            ControlPlane(controller_manager=True, scheduler=True, kwok=True, work_dir=Path(tmp) / "cp") as plane:
        work = Path(tmp)
        models = build_models(Path.home() / ".cache" / "mlsd" / "bench-rollout")
        bad = shifted_variant(models / CASE / "2" / "kserve" / "fp32", work / "v3", version=3)
        install_crds(plane)
        prometheus = PrometheusServer(work).start()
        operator = OperatorProcess(plane, work / "operator.log", env={
            "MLSD_PROMETHEUS_URL": prometheus.url, "MLSD_ROLLOUT_TICK_SECONDS": str(timings.tick_s)}).start()
        plane.kubectl("create", "namespace", NAMESPACE)
        stable = Predictor(models / CASE / "1" / "kserve" / "fp32", "stable", work)
        good = Predictor(models / CASE / "2" / "kserve" / "fp32", "canary", work)
        shifted = Predictor(bad, "canary", work)
        labels = {"namespace": NAMESPACE, "model_deployment": NAME}
        prometheus.scrape([(p.address, labels) for p in (stable, good, shifted)])
        base = manifest(name=NAME, namespace=None, runtime="triton", gateway={"name": "gw"},
                        model={"storageUri": "s3://models/ad/1"})
        plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_yaml.dump(base))
        _wait(plane, lambda o: (o.get("status") or {}).get("phase") == "Ready")
        watch = subprocess.Popen([str(plane.binaries["kubectl"]), f"--kubeconfig={plane.kubeconfig_path}",
                                  "get", "mdep", "-n", NAMESPACE, "-w"], stdout=subprocess.PIPE, text=True)
        share = lambda: int(((_status(plane).get("status") or {}).get("canary") or {}).get("trafficPercent") or 0)
        try:
            for version, canary, outcome in ((2, good, "Promoted"), (3, shifted, "RolledBack")):
                serving = stable if _status(plane)["spec"]["model"]["version"] == "1" else good
                traffic = Traffic(serving, canary, share, rate=timings.traffic_rps, max_seconds=600)
                traffic.start()
                spec = {"canary": {"model": {"version": str(version), "storageUri": f"s3://models/ad/{version}"},
                                   "steps": timings.steps, "interval": f"{timings.interval_s}s",
                                   "analysis": timings.analysis()}}
                plane.kubectl("patch", "mdep", NAME, "-n", NAMESPACE, "--type=merge", "-p",
                              _yaml.json_dumps({"spec": spec}))
                dark: list[float] = []
                seconds = _wait(plane, lambda o: any(h.get("version") == str(version) and h.get("outcome") == outcome
                                                     for h in (o.get("status") or {}).get("history") or []),
                                first_traffic=dark)
                traffic.stop()
                entry = [h for h in _status(plane)["status"]["history"] if h["version"] == str(version)][-1]
                floor = timings.floor_s(outcome)
                rows.append({"canary": f"v{version}", "outcome": outcome, "seconds": seconds, "floor_s": floor,
                             "overhead_s": seconds - floor,
                             "dark_s": dark[0] if dark else None, "reason": entry["reason"],
                             "requests_stable": traffic.sent["stable"], "requests_canary": traffic.sent["canary"]})
                log(f"  v{version} {outcome} after {seconds:.1f}s (floor {floor:.0f}s): {entry['reason']}")
                time.sleep(2)
        finally:
            watch.terminate()
            operator.stop()
            for process in (stable, good, shifted):
                process.stop()
            prometheus.stop()
        watch_output = watch.stdout.read().rstrip()
    return {"timings": asdict(timings), "rows": rows, "watch": watch_output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(Timings.quick() if args.quick else Timings())
    from benchmarks._report import rollout_markdown
    print("\n".join(rollout_markdown(result)))
    print("\n```\n$ kubectl get mdep -n demo -w")
    print(result["watch"])
    print("```")


if __name__ == "__main__":
    main()
