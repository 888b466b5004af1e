"""Time from `kubectl apply` to Ready for N ModelDeployments, and the operator's peak RSS.

Runs on the local control plane (kwok nodes) with the real operator as a subprocess:

    .venv/bin/python -m benchmarks.operator_ready --counts 1 200

Each ModelDeployment is runtime triton (Deployment + Service + HPA + stable Service) so "Ready"
means pods were scheduled onto kwok nodes and the Deployment became Available. The baseline, in
the same run, is the same children applied directly with kubectl (no operator) until their
Deployments are Available: the ratio is the operator's own overhead.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from pathlib import Path

import psutil
from kubernetes import client

from mlsd_operator import _yaml
from mlsd_operator.api import ModelDeployment
from mlsd_operator.builders import build_children
from mlsd_operator.controlplane import KUBE_VERSION, ControlPlane, FakeNode
from tests.conftest import manifest
from tests.integration.operator_harness import OperatorProcess, install_crds


def _peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    process = psutil.Process(pid)
    peak = 0
    while not stop.is_set():
        try:
            peak = max(peak, process.memory_info().rss + sum(c.memory_info().rss for c in process.children(True)))
        except psutil.Error:
            break
        time.sleep(0.1)
    out.append(peak)


def _wait_all(check, count: int, timeout: float, started: float) -> float:
    """Seconds from `started` (taken before `kubectl apply`) until `check()` reaches `count`."""
    while time.monotonic() - started < timeout:
        if check() >= count:
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"not all {count} ready after {timeout}s")


def bench(plane: ControlPlane, work: Path, count: int) -> dict[str, float]:
    api = plane.api_client()
    custom, apps, core = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)
    ns_base, ns_op = f"baseline-{count}", f"operator-{count}"
    for ns in (ns_base, ns_op):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

    # Small requests: the point is the control loop, not bin-packing 200 replicas onto fake nodes.
    small = {"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}}}
    objs = [manifest(name=f"m{i}", namespace=None, runtime="triton", placement=small,
                     model={"storageUri": f"s3://models/ad/{i}"}) for i in range(count)]

    # Baseline: the very objects the operator would create (rendered by the same builders), applied
    # directly with kubectl: same pods, init containers and probes, so the ratio is the operator's
    # own overhead (watch, reconcile, status), not kwok's pod lifecycle.
    children = [c for obj in objs for c in build_children(ModelDeployment.model_validate(obj))]
    path = work / f"baseline-{count}.yaml"
    path.write_text(_yaml.dump_all(children))
    started = time.monotonic()
    plane.kubectl("apply", "-n", ns_base, "-f", str(path), timeout=600)
    baseline = _wait_all(lambda: sum(1 for d in apps.list_namespaced_deployment(ns_base).items
                                     if (d.status.available_replicas or 0) >= 1), count, 600, started)

    path = work / f"mdeps-{count}.yaml"
    path.write_text(_yaml.dump_all(objs))
    started = time.monotonic()
    plane.kubectl("apply", "-n", ns_op, "-f", str(path), timeout=600)
    ready = lambda: sum(1 for o in custom.list_namespaced_custom_object("mlsd.io", "v1alpha1", ns_op, "modeldeployments")["items"]
                        if (o.get("status") or {}).get("phase") == "Ready")
    total = _wait_all(ready, count, 900, started)
    return {"count": count, "baseline_s": baseline, "operator_s": total, "ratio": total / baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 200])
    args = parser.parse_args()
    print(f"# operator apply -> Ready | {platform.processor() or platform.machine()}, "
          f"{psutil.cpu_count()} cores, Kubernetes {KUBE_VERSION}, Python {platform.python_version()}")
    # Enough fake CPU nodes for every replica of both namespaces (each pod asks 100m: the puller).
    nodes = [FakeNode(f"kwok-cpu-{i}", cpu="64", memory="256Gi", pods="250")
             for i in range(max(2, 1 + 2 * sum(args.counts) // 200))]
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(controller_manager=True, scheduler=True, kwok=True,
                                                            nodes=nodes, work_dir=Path(tmp) / "cp") as plane:
        work = Path(tmp)
        install_crds(plane, kserve=False, gateway_api=True)
        operator = OperatorProcess(plane, work / "operator.log").start()
        stop, peak = threading.Event(), []
        watcher = threading.Thread(target=_peak_rss, args=(operator.process.pid, stop, peak), daemon=True)
        watcher.start()
        time.sleep(3)     # warm-up: the operator holds the lease and its watches are open
        print("| ModelDeployments | same children applied directly (s) | mlsd Ready (s) | ratio | per object (ms) |")
        print("|---:|---:|---:|---:|---:|", flush=True)
        try:
            for count in args.counts:
                row = bench(plane, work, count)
                print(f"| {row['count']} | {row['baseline_s']:.1f} | {row['operator_s']:.1f} | {row['ratio']:.2f}x "
                      f"| {1000 * row['operator_s'] / row['count']:.0f} |", flush=True)
        finally:
            stop.set()
            watcher.join(5)
            operator.stop()
        print(f"operator peak RSS: {peak[0] / 2**20:.0f} MiB" if peak else "operator peak RSS: n/a")


if __name__ == "__main__":
    main()
