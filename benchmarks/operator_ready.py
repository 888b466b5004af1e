"""Operator at scale: N ModelDeployments applied at once, on the real control plane with kwok nodes.

    python -m benchmarks --parts operator           # within the suite (report + plots)
    python -m benchmarks.operator_ready --counts 10 100 [--repeat 3]

Per N, in a fresh namespace, with the real operator (`python -m mlsd_operator operator`, its own
ServiceAccount bound to manifests/rbac, production timings) as a subprocess:

- apply: `kubectl apply --server-side` of N Triton ModelDeployments at once; watches record when
  each one's Deployment exists (the operator's reconcile wrote its children) and when each one's
  status turns Ready (pods scheduled onto kwok nodes, Deployment Available, status written).
- change: every object's `spec.autoscaling.maxReplicas` patched once, back to back from one
  client; a watch on the HPAs records when each child carries the new value. Per-object latency
  from the patch request to the child update: that is the reconcile latency, queueing included.
- cost: API requests the operator made, counted from the API server's audit log filtered to the
  operator's ServiceAccount (every request: kopf's watches, patches, events and leases too, not
  only those the Kube wrapper makes), per ModelDeployment and per reconcile (the operator's
  `mlsd_operator_reconciles_total`); the operator's CPU seconds and RSS (peak and at the end).
- baseline (N <= `baseline_max`): the very children the operator renders, applied directly with
  kubectl until their Deployments are Available: the cluster's own pod lifecycle without the
  operator, in the same run.

The fake cluster is fast on purpose: kube-controller-manager and kube-scheduler get a client QPS
of 200 (defaults 20 and 50) so their throttling does not hide the operator's cost. Series of
earlier N stay in the cluster (as in a growing cluster), so the operator's resync timer (300 s)
may reconcile them during a later series; their requests and reconciles are counted alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubernetes.watch.watch import iter_resp_lines

from benchmarks._stats import growth, percentiles
from mlsd_operator import _yaml
from mlsd_contract.api import ModelDeployment
from mlsd_operator.builders import build_children
from mlsd_devcluster import ControlPlane, FakeNode

OPERATOR_USER = "system:serviceaccount:mlsd-system:mlsd-operator"
COMPONENT_QPS = ["--kube-api-qps=200", "--kube-api-burst=400"]
SMALL = {"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}}}


@dataclass
class Scale:
    counts: list[int] = field(default_factory=lambda: [10, 100, 500, 1000])
    repeat: int = 3
    repeat_max: int = 10        # N above this run once (time budget)
    baseline_max: int = 100     # direct-apply baseline only up to this N (it doubles the time)
    timeout: float = 900.0

    @classmethod
    def quick(cls) -> "Scale":
        return cls(counts=[10], repeat=1, baseline_max=10, timeout=180.0)

    def runs(self, n: int) -> int:
        return self.repeat if n <= self.repeat_max else 1

    def trimmed(self) -> list[str]:
        return [f"N > {self.repeat_max} measured once (N <= {self.repeat_max}: {self.repeat} repeats)",
                f"direct-apply baseline only for N <= {self.baseline_max}"]


class AuditedControlPlane(ControlPlane):
    """The local control plane with an audit log of the operator's requests only (level Metadata,
    one event per finished request) and unthrottled controller-manager/scheduler clients."""

    def _spawn(self, name: str, argv: list[str]):
        if name == "kube-apiserver":
            policy = self.work_dir / "bench-audit-policy.yaml"
            policy.write_text(_yaml.dump({
                "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "omitStages": ["RequestReceived", "ResponseStarted"],
                "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}]}))
            self.bench_audit_log = self.work_dir / "bench-audit.log"
            argv = [*argv, f"--audit-policy-file={policy}", f"--audit-log-path={self.bench_audit_log}",
                    "--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-batch-max-wait=1s",
                    # The writer rotates at 100 MB by default (lumberjack); a 1000 series logs more.
                    "--audit-log-maxsize=100000"]
        elif name in ("kube-controller-manager", "kube-scheduler"):
            argv = [*argv, *COMPONENT_QPS]
        return super()._spawn(name, argv)


def audit_counts(path: Path, since: float, until: float) -> Counter:
    """Operator requests received in [since, until] (wall clock), by verb and resource."""
    counts: Counter = Counter()
    # Rotated files (<stem>-<time>.log) too, should the size limit ever be reached.
    for log in sorted(path.parent.glob(f"{path.stem}*{path.suffix}")):
        counts.update(_audit_file_counts(log, since, until))
    return counts


def _audit_file_counts(path: Path, since: float, until: float) -> Counter:
    counts: Counter = Counter()
    with path.open() as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("user", {}).get("username") != OPERATOR_USER:
                continue
            at = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
            if since <= at <= until:
                ref = event.get("objectRef") or {}
                resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                counts[f"{event['verb']} {resource}"] += 1
    return counts


class FirstSeen(threading.Thread):
    """Watches a collection (raw JSON, no model deserialisation: cheap at 1000 objects) and records
    when each object first satisfies `predicate`."""

    def __init__(self, api, path: str, predicate: Callable[[dict], bool]):
        super().__init__(daemon=True)
        self.api, self.path, self.predicate = api, path, predicate
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()

    def _note(self, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if name not in self.seen and self.predicate(obj):
            self.seen[name] = time.time()

    def run(self) -> None:
        url = self.api.configuration.host + self.path
        while not self.stop.is_set():
            try:
                listed = json.loads(self.api.rest_client.GET(url).data)
                for obj in listed.get("items") or []:
                    self._note(obj)
                self.ready.set()
                response = self.api.rest_client.GET(url, query_params=[
                    ("watch", "true"), ("resourceVersion", listed["metadata"]["resourceVersion"]),
                    ("allowWatchBookmarks", "false"), ("timeoutSeconds", "30")], _preload_content=False)
                for line in iter_resp_lines(response):
                    if self.stop.is_set():
                        break
                    event = json.loads(line)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._note(event["object"])
                response.release_conn()
            except Exception:  # noqa: BLE001 - a dropped watch is re-listed; the next list catches up
                time.sleep(0.2)

    def wait(self, count: int, deadline: float) -> float:
        while len(self.seen) < count:
            if time.time() > deadline:
                raise TimeoutError(f"{self.path}: {len(self.seen)}/{count} after the timeout")
            time.sleep(0.1)
        return max(self.seen.values())

    def __enter__(self) -> "FirstSeen":
        self.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()


class Sampler(threading.Thread):
    """Peak RSS of a process tree, sampled every 0.2 s; `reset()` starts a new peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def usage(self) -> tuple[float, float]:
        from benchmarks.serving import process_usage
        return process_usage(lambda: [self.pid])

    def reset(self) -> None:
        self.peak = self.usage()[1]

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.usage()[1])
            time.sleep(0.2)


def _mdeps(n: int, namespace: str) -> list[dict]:
    from tests.conftest import manifest
    # cpu autoscaling: an HPA per object, the child the change part watches (concurrency and rps
    # would render KEDA ScaledObjects instead).
    return [manifest(name=f"m{i}", namespace=namespace, runtime="triton", placement=SMALL,
                     autoscaling={"metric": "cpu", "target": 70},
                     model={"storageUri": f"s3://models/ad/{i}"}) for i in range(n)]


def _create_namespace(plane, name: str) -> None:
    plane.kubectl("create", "namespace", name)


def baseline(plane, api, work: Path, n: int, run: int, timeout: float) -> dict:
    namespace = f"direct-{n}-{run}"
    _create_namespace(plane, namespace)
    children = [c for obj in _mdeps(n, namespace) for c in build_children(ModelDeployment.model_validate(obj))]
    path = work / f"{namespace}.yaml"
    path.write_text(_yaml.dump_all(children))
    available = lambda d: ((d.get("status") or {}).get("availableReplicas") or 0) >= 1
    with FirstSeen(api, f"/apis/apps/v1/namespaces/{namespace}/deployments", available) as deployments:
        started = time.time()
        plane.kubectl("apply", "--server-side", "-f", str(path), timeout=timeout)
        done = deployments.wait(n, started + timeout)
    return {"n": n, "run": run, "ready_s": done - started}


def through_operator(plane, api, work: Path, n: int, run: int, sampler: Sampler, operator, timeout: float) -> dict:
    from kubernetes import client

    namespace = f"mdep-{n}-{run}"
    _create_namespace(plane, namespace)
    path = work / f"{namespace}.yaml"
    path.write_text(_yaml.dump_all(_mdeps(n, namespace)))
    ready = lambda o: (o.get("status") or {}).get("phase") == "Ready"
    custom = client.CustomObjectsApi(api)
    mdeps = f"/apis/mlsd.io/v1alpha1/namespaces/{namespace}/modeldeployments"
    audit = plane.bench_audit_log

    # apply -> children -> Ready
    log_offset = _log_size(operator)
    sampler.reset()
    reconciles0 = reconciles(operator)
    cpu0, _ = sampler.usage()
    with FirstSeen(api, mdeps, ready) as ready_watch, \
            FirstSeen(api, f"/apis/apps/v1/namespaces/{namespace}/deployments", lambda d: True) as children:
        started = time.time()
        plane.kubectl("apply", "--server-side", "-f", str(path), timeout=timeout)
        applied = time.time()
        children_done = children.wait(n, started + timeout)
        ready_done = ready_watch.wait(n, started + timeout)
    cpu1, rss_end = sampler.usage()
    apply_phase = {"apply_s": applied - started, "children_s": children_done - started, "ready_s": ready_done - started,
                   "cpu_s": cpu1 - cpu0, "rss_peak_mib": sampler.peak / 2**20, "rss_end_mib": rss_end / 2**20,
                   "reconciles": reconciles(operator) - reconciles0, "window": (started, ready_done)}

    # one spec change per object -> the HPA child carries it
    time.sleep(1.0)
    sampler.reset()
    reconciles0 = reconciles(operator)
    cpu0, _ = sampler.usage()
    sent: dict[str, float] = {}
    updated = lambda h: h["spec"].get("maxReplicas") == 2
    with FirstSeen(api, f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers", updated) as hpas:
        started = time.time()
        for i in range(n):
            sent[f"m{i}"] = time.time()
            custom.patch_namespaced_custom_object("mlsd.io", "v1alpha1", namespace, "modeldeployments", f"m{i}",
                                                  {"spec": {"autoscaling": {"maxReplicas": 2}}})
        done = hpas.wait(n, started + timeout)
        latencies = [1000 * (hpas.seen[name] - sent[name.removesuffix("-v1")])
                     for name in hpas.seen if name.removesuffix("-v1") in sent]
    time.sleep(1.0)    # the status writes that follow the child update belong to this reconcile
    cpu1, _ = sampler.usage()
    p50, p95, p99 = percentiles(latencies)
    change_phase = {"sent_s": sent[f"m{n - 1}"] - started, "all_updated_s": done - started,
                    "latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p99,
                    "cpu_s": cpu1 - cpu0, "reconciles": reconciles(operator) - reconciles0,
                    "window": (started, done + 1.0)}

    time.sleep(1.5)   # the audit log's batch backend flushes within a second
    for phase in (apply_phase, change_phase):
        since, until = phase.pop("window")
        counts = audit_counts(audit, since, until)
        phase["api_requests"] = sum(counts.values())
        phase["api_by_verb"] = dict(counts.most_common())
        phase["api_per_mdep"] = phase["api_requests"] / n
        phase["api_per_reconcile"] = phase["api_requests"] / phase["reconciles"] if phase["reconciles"] else None
    return {"n": n, "run": run, "apply": apply_phase, "change": change_phase,
            "handler_failures": handler_failures(operator, log_offset)}


def _log_size(operator) -> int:
    try:
        return operator.log_path.stat().st_size
    except OSError:
        return 0


def handler_failures(operator, offset: int) -> dict[str, int]:
    """Handler failures the operator logged since `offset`, by kopf's retry message and the error:
    a figure is only as good as the reconciles behind it, and a 60 s kopf back-off shows here."""
    counts: Counter = Counter()
    try:
        with operator.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if "[ERROR" in line and "Handler" in line and "failed" in line:
            counts[line.split("] ", 1)[-1].split("Handler ", 1)[-1][:160]] += 1
    return dict(counts.most_common())


def reconciles(operator) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("mlsd_operator_reconciles_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def hpa_name_check() -> None:
    """The HPA child's name ends in '-v1' (named after the stable version): latencies pair on it."""
    obj = ModelDeployment.model_validate(_mdeps(1, "x")[0])
    names = [c["metadata"]["name"] for c in build_children(obj) if c["kind"] == "HorizontalPodAutoscaler"]
    assert names == ["m0-v1"], f"HPA child naming changed: {names}; update the pairing in through_operator"


def run(scale: Scale, log: Callable[[str], None] = print) -> dict:
    from tests.integration.operator_harness import OperatorProcess, install_crds

    hpa_name_check()
    pods = sum(n * scale.runs(n) for n in scale.counts) + sum(n * scale.runs(n) for n in scale.counts
                                                                if n <= scale.baseline_max)
    nodes = [FakeNode(f"kwok-cpu-{i}", cpu="256", memory="1Ti", pods="500") for i in range(max(2, 1 + pods // 400))]
    operator_runs, baseline_runs = [], []
    with tempfile.TemporaryDirectory(prefix="mlsd-bench-operator-") as tmp, \
            AuditedControlPlane(controller_manager=True, scheduler=True, kwok=True, nodes=nodes,
                                work_dir=Path(tmp) / "cp") as plane:
        work = Path(tmp)
        install_crds(plane, kserve=False, gateway_api=True)
        # Production timings (the harness defaults are test-friendly: 20 s resync, 4 s lease).
        operator = OperatorProcess(plane, work / "operator.log", env={
            "MLSD_RESYNC_SECONDS": "300", "MLSD_LEASE_SECONDS": "15", "MLSD_DEPENDENCY_RETRY_SECONDS": "30"})
        operator.start(leading=True)
        sampler = Sampler(operator.process.pid)
        sampler.start()
        api = plane.api_client()
        try:
            # Warm-up: one ModelDeployment through the whole path (watches open, imports, first apply).
            through_operator(plane, api, work, 1, "warmup", sampler, operator, scale.timeout)
            idle_rss = sampler.usage()[1] / 2**20
            for n in scale.counts:
                for r in range(scale.runs(n)):
                    if n <= scale.baseline_max:
                        row = baseline(plane, api, work, n, r, scale.timeout)
                        baseline_runs.append(row)
                        log(f"  direct apply  N={n:<5d} run {r}: Deployments Available in {row['ready_s']:.1f}s")
                    row = through_operator(plane, api, work, n, r, sampler, operator, scale.timeout)
                    operator_runs.append(row)
                    a, c = row["apply"], row["change"]
                    log(f"  operator      N={n:<5d} run {r}: children {a['children_s']:.1f}s, Ready {a['ready_s']:.1f}s, "
                        f"{a['api_per_mdep']:.1f} API req/mdep, {a['cpu_s']:.1f} CPU s, RSS peak {a['rss_peak_mib']:.0f} MiB; "
                        f"change p50 {c['latency_p50_ms']:.0f} / p99 {c['latency_p99_ms']:.0f} ms, "
                        f"{c['api_per_reconcile'] or float('nan'):.1f} API req/reconcile; "
                        f"{sum(row['handler_failures'].values())} handler failures logged")
        finally:
            sampler.stop.set()
            operator.stop()
            api.close()
    result = {"scale": asdict(scale), "trimmed": scale.trimmed(), "idle_rss_mib": idle_rss,
              "operator_runs": operator_runs, "baseline_runs": baseline_runs}
    result["rows"], result["growth"] = aggregate(operator_runs, baseline_runs)
    return result


# -- aggregation ----------------------------------------------------------------------------------

OPERATOR_METRICS = {
    "children_s": ("apply", "children_s"), "ready_s": ("apply", "ready_s"),
    "apply_api_per_mdep": ("apply", "api_per_mdep"), "apply_api_per_reconcile": ("apply", "api_per_reconcile"),
    "apply_cpu_s": ("apply", "cpu_s"), "rss_peak_mib": ("apply", "rss_peak_mib"),
    "change_p50_ms": ("change", "latency_p50_ms"), "change_p99_ms": ("change", "latency_p99_ms"),
    "change_all_s": ("change", "all_updated_s"), "change_api_per_reconcile": ("change", "api_per_reconcile"),
    "change_cpu_ms_per_mdep": ("change", "cpu_s"),
}
GROWTH_OF = ("ready_s", "children_s", "apply_cpu_s", "rss_peak_mib", "change_p99_ms", "change_all_s")


def aggregate(operator_runs: list[dict], baseline_runs: list[dict]) -> tuple[list[dict], dict]:
    from benchmarks._stats import summarize

    rows = []
    for n in sorted({r["n"] for r in operator_runs}):
        runs = [r for r in operator_runs if r["n"] == n]
        row: dict = {"n": n, "runs": len(runs)}
        for name, (phase, key) in OPERATOR_METRICS.items():
            values = [r[phase][key] for r in runs]
            if name == "change_cpu_ms_per_mdep":
                values = [1000 * v / n for v in values]
            row[name] = summarize(v for v in values if v is not None)
        row["apply_api_by_verb"] = runs[0]["apply"]["api_by_verb"]
        failures: Counter = Counter()
        for r in runs:
            failures.update(r.get("handler_failures") or {})
        row["handler_failures"] = dict(failures.most_common())
        direct = [r["ready_s"] for r in baseline_runs if r["n"] == n]
        row["direct_ready_s"] = summarize(direct) if direct else None
        row["x_direct"] = (row["ready_s"]["median"] / row["direct_ready_s"]["median"]) if direct else None
        rows.append(row)
    fits = {name: growth([r["n"] for r in rows], [r[name]["median"] for r in rows]) for name in GROWTH_OF}
    return rows, fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = Scale.quick() if args.quick else Scale()
    scale.counts = args.counts or scale.counts
    scale.repeat = args.repeat or scale.repeat
    result = run(scale)
    from benchmarks._report import operator_markdown
    print("\n".join(operator_markdown(result)))


if __name__ == "__main__":
    main()
