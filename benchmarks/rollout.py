"""A real rollout and a real rollback, timed, with the `kubectl get mdep -w` a user would watch.

    .venv/bin/python -m benchmarks.rollout

Real parts: the local control plane with kwok nodes, the operator (subprocess), Debian's
Prometheus scraping two KServe predictor processes on loopback, and generated traffic split as the
route says. Version 2 is a good retrain; version 3 is version 2 with its probabilities pushed up
(p -> p^(1/4)): healthy, fast, and miscalibrated. Intervals are compressed (10 s); the logic is
the production one.
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from mlsd_operator import _yaml
from mlsd_operator.controlplane import KUBE_VERSION, ControlPlane
from tests.conftest import manifest
from tests.integration.operator_harness import OperatorProcess, install_crds
from tests.integration.rollout_harness import CASE, Predictor, PrometheusServer, Traffic, build_models, shifted_variant

NAMESPACE, NAME = "demo", "ad-ctr"
ANALYSIS = {"minRequests": 20, "maxErrorRate": 0.01, "maxLatencyP99Ms": 1000, "maxPredictionDrift": 0.5,
            "failureLimit": 2}


def _status(plane) -> dict:
    out = plane.kubectl("get", "mdep", NAME, "-n", NAMESPACE, "-o", "yaml").stdout
    return _yaml.load_all_text(out)[0]


def _wait(plane, predicate, timeout: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate(_status(plane)):
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError("rollout did not finish")


def main() -> None:
    print(f"# rollout | {platform.machine()}, {psutil.cpu_count()} cores, Kubernetes {KUBE_VERSION}, "
          f"Python {platform.python_version()}; interval 10s, steps [20, 50], tick 1s, scrape 1s")
    with tempfile.TemporaryDirectory() as tmp, \
            ControlPlane(controller_manager=True, scheduler=True, kwok=True, work_dir=Path(tmp) / "cp") as plane:
        work = Path(tmp)
        models = build_models(work / "models")
        bad = shifted_variant(models / CASE / "2" / "kserve" / "fp32", work / "v3", version=3)
        install_crds(plane)
        prometheus = PrometheusServer(work).start()
        operator = OperatorProcess(plane, work / "operator.log", env={
            "MLSD_PROMETHEUS_URL": prometheus.url, "MLSD_ROLLOUT_TICK_SECONDS": "1"}).start()
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
            rows = []
            for version, canary, outcome in ((2, good, "Promoted"), (3, shifted, "RolledBack")):
                serving = stable if _status(plane)["spec"]["model"]["version"] == "1" else good
                traffic = Traffic(serving, canary, share, max_seconds=600)
                traffic.start()
                spec = {"canary": {"model": {"version": str(version), "storageUri": f"s3://models/ad/{version}"},
                                   "steps": [20, 50], "interval": "10s", "analysis": ANALYSIS}}
                plane.kubectl("patch", "mdep", NAME, "-n", NAMESPACE, "--type=merge", "-p",
                              _yaml.json_dumps({"spec": spec}))
                seconds = _wait(plane, lambda o: any(h.get("version") == str(version) and h.get("outcome") == outcome
                                                     for h in (o.get("status") or {}).get("history") or []))
                traffic.stop()
                entry = [h for h in _status(plane)["status"]["history"] if h["version"] == str(version)][-1]
                rows.append((version, outcome, seconds, entry["reason"], traffic.sent))
                time.sleep(3)
        finally:
            watch.terminate()
            operator.stop()
            for process in (stable, good, shifted):
                process.stop()
            prometheus.stop()
        print("\n| canary | outcome | time from canary spec (s) | reason | requests stable/canary |")
        print("|---|---|---:|---|---|")
        for version, outcome, seconds, reason, sent in rows:
            print(f"| v{version} | {outcome} | {seconds:.1f} | {reason} | {sent['stable']}/{sent['canary']} |")
        print("\n```\n$ kubectl get mdep -n demo -w")
        print(watch.stdout.read().rstrip())
        print("```")


if __name__ == "__main__":
    main()
