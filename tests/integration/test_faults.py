"""The real operator under faults of its control plane, with real parts only: its own kube-apiserver
+ etcd + controller-manager + scheduler + kwok nodes (a plane of its own, so restarts here never
disturb other tests), the operator as a subprocess under its RBAC ServiceAccount reaching the API
server through a TCP proxy (to cut its connections, watch streams included), and a real Prometheus
scraping two real predictors (v1, v2) under steady load for every ModelDeployment (`Evidence`):
with `minRequests: 0` and no errors every analysis passes, so canaries walk their steps on the
clock; a canary that served no request would never pass.

After every fault the test checks: the ModelDeployments converge (promoted, Ready), each owns
exactly the children the builders want (none missing, duplicated or orphaned; no ReplicaSet of a
deleted Deployment), the canary's step never went back and its failure counter never moved, and
no HTTPRoute ever sent traffic to a Deployment without an available replica (polled every 0.25 s).

Time to converge and resume is printed per fault (run with -s to see the FIGURE lines that
docs/reliability.md quotes). MLSD_FAULT_KILLS (default 4) sets how many SIGKILLs the random-kill
test deals; MLSD_FAULT_SEED (default 10) its seed; MLSD_FAULT_ETCD_SECONDS (default 30) how long
etcd stays down."""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlsd_operator import _yaml
from tests._support import audited_plane, poll
from tests.conftest import manifest
from tests.integration.fault_harness import (
    GROUP, PLURAL, VERSION, Supervisor, TcpProxy, TrafficMonitor, children_report, clean, kubelet_resync,
    point_kubeconfig_at, set_pods_ready,
)
from tests.integration.operator_harness import OperatorProcess
from tests.integration.rollout_harness import Evidence, PrometheusServer

KILLS = int(os.environ.get("MLSD_FAULT_KILLS", "4"))
SEED = int(os.environ.get("MLSD_FAULT_SEED", "10"))
OPERATOR_USER = "system:serviceaccount:mlsd-system:mlsd-operator"
ETCD_DOWN = float(os.environ.get("MLSD_FAULT_ETCD_SECONDS", "30"))
ANALYSIS = {"minRequests": 0, "maxErrorRate": 0.05, "maxLatencyP99Ms": 5000, "maxPredictionDrift": 10,
            "failureLimit": 1}
FIGURES: list[str] = []
EVIDENCE: Evidence


def figure(text: str) -> None:
    FIGURES.append(text)
    print(f"FIGURE {text}")


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    # Audited: the concurrent-writer test counts the 409s the operator got from the audit log.
    with audited_plane(tmp_path_factory.mktemp("fault-plane")) as cp:
        yield cp


@pytest.fixture(scope="module")
def api(plane):
    with plane.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module")
def proxy(plane):
    port = int(plane.server.rsplit(":", 1)[1])
    tcp = TcpProxy("127.0.0.1", port)
    yield tcp
    tcp.close()


@pytest.fixture(scope="module")
def supervised(plane, proxy, models, tmp_path_factory):
    global EVIDENCE
    work = tmp_path_factory.mktemp("fault-operator")
    prometheus = PrometheusServer(work).start()
    EVIDENCE = Evidence(models, prometheus, work)
    operator = OperatorProcess(plane, work / "operator.log", env={
        "MLSD_PROMETHEUS_URL": prometheus.url, "MLSD_ROLLOUT_TICK_SECONDS": "1", "MLSD_RESYNC_SECONDS": "15"})
    point_kubeconfig_at(Path(operator.env["KUBECONFIG"]), f"https://127.0.0.1:{proxy.port}")
    operator.start(leading=True)
    supervisor = Supervisor(operator)
    supervisor.start()
    yield supervisor
    supervisor.stop()
    EVIDENCE.stop()
    prometheus.stop()
    for line in FIGURES:
        print("FIGURE", line)


@pytest.fixture
def ns(request, api):
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def monitor(api, ns):
    watcher = TrafficMonitor(api, ns)
    watcher.start()
    yield watcher
    watcher.stop()


def rollout_manifest(name: str, steps: list[int], interval: str = "2s") -> dict[str, Any]:
    return manifest(name=name, namespace=None, runtime="triton", gateway={"name": "gw"},
                    autoscaling={"minReplicas": 1, "maxReplicas": 2},
                    model={"storageUri": "s3://models/ad/1"},
                    canary={"model": {"version": "2", "storageUri": "s3://models/ad/2"},
                            "steps": steps, "interval": interval, "analysis": ANALYSIS})


def apply(plane, ns: str, obj: dict[str, Any]) -> None:
    EVIDENCE.register(ns, obj["metadata"]["name"])
    plane.kubectl("apply", "-n", ns, "-f", "-", input=_yaml.dump(obj))


def get(api, ns: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def wait(supervisor: Supervisor, predicate: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    return poll(predicate, what, timeout=timeout, not_yet=(ApiException, OSError),    # a fault may still be clearing
                detail=lambda: f"--- operator log ---\n{supervisor.operator.log_tail(80)}")


def promoted(api, ns: str, name: str) -> bool:
    obj = get(api, ns, name)
    status = obj.get("status") or {}
    return obj["spec"]["model"]["version"] == "2" and "canary" not in obj["spec"] \
        and status.get("phase") == "Ready" and (status.get("stable") or {}).get("version") == "2"


def step_of(api, ns: str, name: str) -> int | None:
    canary = (get(api, ns, name).get("status") or {}).get("canary") or {}
    return canary.get("step") if canary.get("stepStartedAt") else None


def converge(supervisor, api, ns: str, names: list[str], what: str, timeout: float = 150) -> float:
    """Waits for every named rollout to be promoted with exactly its children; returns the seconds."""
    started = time.monotonic()
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen["promoted"] = {n: promoted(api, ns, n) for n in names}
        seen["children"] = children_report(api, ns)
        return all(seen["promoted"].values()) and clean(seen["children"])

    try:
        wait(supervisor, done, f"{what}: promotion of {names} with exactly the desired children", timeout)
    except BaseException:
        print("last seen:", seen, "\nstatus:", [(get(api, ns, n).get("status")) for n in names])
        raise
    return time.monotonic() - started


def check_history_and_safety(api, ns: str, names: list[str], monitor: TrafficMonitor) -> None:
    log = monitor.stop()
    assert not log.violations, "traffic reached a track with no available replica:\n" + "\n".join(log.violations[:20])
    for name in names:
        steps = log.steps.get(name, [])
        assert steps == sorted(steps), f"{name}: the canary's step went back: {steps}"
        assert log.failed_analyses.get(name, {0}) == {0}, f"{name}: failedAnalyses moved: {log.failed_analyses}"
        history = (get(api, ns, name).get("status") or {}).get("history") or []
        assert [(h["version"], h["outcome"]) for h in history] == [("2", "Promoted")], history


def test_apiserver_restarted_mid_reconcile(plane, api, supervised, ns, monitor):
    names = [f"mid-{i}" for i in range(3)]
    for name in names:
        apply(plane, ns, rollout_manifest(name, [20, 60], interval="2s"))
    apps = client.AppsV1Api(api)
    wait(supervised, lambda: apps.list_namespaced_deployment(ns).items, "the first child Deployment")
    created = len(apps.list_namespaced_deployment(ns).items)
    started = time.monotonic()
    plane.restart_component("kube-apiserver", hard=True)
    back = time.monotonic()
    seconds = converge(supervised, api, ns, names, "after the API server restart")
    check_history_and_safety(api, ns, names, monitor)
    figure(f"apiserver SIGKILL+restart mid-reconcile ({created} of 6 Deployments created): down {back - started:.1f}s, "
           f"3 rollouts promoted with exact children {seconds:.1f}s after it was back; operator exits: "
           f"{len(supervised.exits)}; peak operator RSS {supervised.peak_mib:.0f} MiB")


def test_apiserver_restarted_mid_rollout(plane, api, supervised, ns, monitor):
    name = "roll"
    apply(plane, ns, rollout_manifest(name, [10, 20, 30, 40, 50, 60], interval="2s"))
    wait(supervised, lambda: (step_of(api, ns, name) or 0) >= 2, "step 3 of the canary")
    before = step_of(api, ns, name)
    started = time.monotonic()
    plane.restart_component("kube-apiserver")
    back = time.monotonic()
    wait(supervised, lambda: (step_of(api, ns, name) or 0) > before or promoted(api, ns, name), "progress after restart")
    resumed = time.monotonic() - back
    seconds = converge(supervised, api, ns, [name], "after the API server restart") + resumed
    check_history_and_safety(api, ns, [name], monitor)
    figure(f"apiserver restart at step {before}: down {back - started:.1f}s, next step {resumed:.1f}s after "
           f"(interval 2s), promoted with exact children {seconds:.1f}s after; operator exits {len(supervised.exits)}")


def test_etcd_stopped_mid_rollout(plane, api, supervised, ns, monitor):
    name = "etcd"
    exits = len(supervised.exits)
    # Long enough that the rollout is still going when the pods are marked NotReady (~15 s after
    # etcd is back): that moment is what this test is about.
    apply(plane, ns, rollout_manifest(name, [5, 10, 20, 30, 40, 50, 60, 70, 80, 90], interval="3s"))
    wait(supervised, lambda: (step_of(api, ns, name) or 0) >= 1, "step 2 of the canary")
    before = step_of(api, ns, name)
    plane.stop_component("etcd", hard=True)
    time.sleep(ETCD_DOWN)
    plane.start_component("etcd")
    back = time.monotonic()
    # The node lifecycle controller may mark every pod NotReady once it sees the stale node
    # heartbeats (whether it does depends on where the outage fell in its grace period); the
    # rollout must then hold: before the fix it advanced and promoted onto the unready canary.
    held, deadline = None, time.monotonic() + 30
    while held is None and time.monotonic() < deadline:
        if not client.AppsV1Api(api).read_namespaced_deployment(f"{name}-v2", ns).status.available_replicas:
            held = (step_of(api, ns, name), time.monotonic())
        time.sleep(0.5)
    restored = 0
    if held is not None:
        assert held[0] is not None, "the rollout ended before the pods were marked NotReady: lengthen it"
        time.sleep(5)
        assert not promoted(api, ns, name) and step_of(api, ns, name) == held[0], "advanced onto an unready canary"
        restored = kubelet_resync(api, ns)
    wait(supervised, lambda: (step_of(api, ns, name) or 0) > (held[0] if held else before) or promoted(api, ns, name),
         "progress after etcd is back (and the pods are Ready again)", timeout=180)
    resumed = time.monotonic() - back
    seconds = converge(supervised, api, ns, [name], "after etcd was back") + resumed
    check_history_and_safety(api, ns, [name], monitor)
    marked = f"pods marked NotReady {held[1] - back:.1f}s after etcd was back, rollout held at step {held[0]} " \
        f"until {restored} pods were Ready again" if held else "pods not marked NotReady this time"
    figure(f"etcd stopped {ETCD_DOWN:.0f}s at step {before}: {marked}; next step "
           f"{resumed:.1f}s after etcd was back, promoted with exact children {seconds:.1f}s after; traffic samples "
           f"held on the unready canary {monitor.log.held_on_unavailable}; operator exits "
           f"{len(supervised.exits) - exits}")


def canary_weight(api, ns: str, name: str) -> int | None:
    try:
        route = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", ns, "httproutes", name)
    except ApiException:
        return None
    return next((ref.get("weight", 1) for rule in route["spec"].get("rules") or []
                 for ref in rule.get("backendRefs") or [] if ref["name"] == f"{name}-v2"), 0)


def test_a_canary_losing_its_pods_holds_the_rollout(plane, api, supervised, ns, monitor):
    """The deterministic form of what the etcd outage may cause: the canary's pods stop being
    Ready mid-rollout (here: reported NotReady as a kubelet would on failing readiness probes)."""
    name = "unready"
    apply(plane, ns, rollout_manifest(name, [10, 20, 30, 40], interval="2s"))
    wait(supervised, lambda: (step_of(api, ns, name) or 0) >= 1, "step 2 of the canary")
    # The pods go once the route carries the step: status is written before the route, so status
    # alone would let the test pull the pods between the two writes (the operator then keeps the
    # route's weight, but the monitor would see that only if it sampled in between).
    steps = [10, 20, 30, 40]
    wait(supervised, lambda: canary_weight(api, ns, name) == steps[step_of(api, ns, name) or 0],
         "the route to carry the status's step")
    assert set_pods_ready(api, ns, f"mlsd.io/model-deployment={name},mlsd.io/version=2", False) >= 1
    apps = client.AppsV1Api(api)
    wait(supervised, lambda: not apps.read_namespaced_deployment(f"{name}-v2", ns).status.available_replicas,
         "the canary Deployment to have no available replica")
    held = step_of(api, ns, name)
    weight = canary_weight(api, ns, name)
    time.sleep(8)                                  # four intervals
    assert step_of(api, ns, name) == held and not promoted(api, ns, name), "advanced onto an unready canary"
    assert canary_weight(api, ns, name) <= weight, "the route gave the unready canary more traffic"
    set_pods_ready(api, ns, f"mlsd.io/model-deployment={name},mlsd.io/version=2", True)
    returned = time.monotonic()
    seconds = converge(supervised, api, ns, [name], "after the canary's pods were Ready again")
    check_history_and_safety(api, ns, [name], monitor)
    figure(f"canary pods NotReady at step {held}: held 8 s (4 intervals) without advancing; promoted "
           f"{time.monotonic() - returned:.1f}s after they were Ready again ({seconds:.1f}s converge)")


def test_watch_streams_cut(plane, api, supervised, proxy, ns, monitor):
    """Cuts every connection of the operator (its watches too) five times during a rollout, then
    once more right before a spec edit: the edit must reach the children through a re-established
    watch, well before the 15 s resync would repair it."""
    name = "cut"
    apply(plane, ns, rollout_manifest(name, [10, 20, 30, 40, 50], interval="2s"))
    wait(supervised, lambda: step_of(api, ns, name) is not None, "the canary to start")
    cut = 0
    for _ in range(5):
        cut += proxy.cut()
        time.sleep(1.5)
    converge(supervised, api, ns, [name], "after the cuts")
    check_history_and_safety(api, ns, [name], monitor)
    time.sleep(2)
    proxy.cut()
    time.sleep(0.5)          # kopf notices the closed stream and re-lists before the edit
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, {"spec": {"autoscaling": {"maxReplicas": 4}}})
    edited = time.monotonic()
    custom = client.CustomObjectsApi(api)
    wait(supervised, lambda: custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", ns, "scaledobjects", f"{name}-v2")["spec"]["maxReplicaCount"] == 4,
         "the edit to reach the ScaledObject", timeout=30)
    latency = time.monotonic() - edited
    assert latency < 10, f"the edit took {latency:.1f}s: it came from the resync, not the watch"
    figure(f"watch streams cut 6 times ({cut} connections reset during the rollout): promoted, edit after a cut "
           f"reached the ScaledObject in {latency:.1f}s")


class ConcurrentWriter(threading.Thread):
    """A second writer racing the operator: bumps the ModelDeployment's resourceVersion (an
    annotation) so the operator's conditional status writes meet 409s, and rewrites the children's
    operator-owned fields (the canary's route weight to 0, the stable's image) with
    read-modify-write PUTs that meet 409s of their own."""

    def __init__(self, api, ns: str, name: str):
        super().__init__(daemon=True)
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.ns, self.name = ns, name
        self.conflicts = {"route": 0, "deployment": 0}
        self.writes = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            try:
                self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, self.name,
                                                           {"metadata": {"annotations": {"chaos.test/n": str(i)}}})
                self.writes += 1
                self._rewrite_route()
                self._rewrite_image()
            except ApiException as error:
                if error.status != 404:
                    raise
            time.sleep(0.05)

    def _rewrite_route(self) -> None:
        route = self.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", self.ns, "httproutes", self.name)
        refs = route["spec"]["rules"][0]["backendRefs"]
        for ref in refs:
            ref["weight"] = 100 if ref is refs[0] else 0        # the safe direction: all to stable
        try:
            self.custom.replace_namespaced_custom_object("gateway.networking.k8s.io", "v1", self.ns, "httproutes",
                                                         self.name, route)
        except ApiException as error:
            if error.status != 409:
                raise
            self.conflicts["route"] += 1

    def _rewrite_image(self) -> None:
        deployment = self.apps.read_namespaced_deployment(f"{self.name}-v1", self.ns)
        deployment.spec.template.spec.containers[0].image = "example.invalid/stale:0"
        try:
            self.apps.replace_namespaced_deployment(f"{self.name}-v1", self.ns, deployment)
        except ApiException as error:
            if error.status != 409:
                raise
            self.conflicts["deployment"] += 1

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(10)


def test_conflicts_from_a_concurrent_writer(plane, api, supervised, ns, monitor):
    name = "race"
    apply(plane, ns, rollout_manifest(name, [10, 20, 30, 40, 50, 60], interval="2s"))
    wait(supervised, lambda: step_of(api, ns, name) is not None, "the canary to start")
    writer = ConcurrentWriter(api, ns, name)
    audit_offset = plane.audit_log_path.stat().st_size
    writer.start()
    try:
        wait(supervised, lambda: (step_of(api, ns, name) or 0) >= 3 or promoted(api, ns, name),
             "the rollout to progress while a second writer races it", timeout=90)
    finally:
        writer.stop()
    stopped = time.monotonic()
    converge(supervised, api, ns, [name], "after the concurrent writer stopped")
    check_history_and_safety(api, ns, [name], monitor)
    deployment = client.AppsV1Api(api).read_namespaced_deployment(f"{name}-v2", ns)
    assert deployment.spec.template.spec.containers[0].image != "example.invalid/stale:0"
    route = client.CustomObjectsApi(api).get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns,
                                                                      "httproutes", name)
    assert [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]] == [(f"{name}-v2", 100)]
    with open(plane.audit_log_path, "rb") as audit:
        audit.seek(audit_offset)
        lines = audit.read().decode().splitlines()
    conflicts: dict[str, int] = {}
    for event in map(json.loads, lines):
        if event.get("user", {}).get("username") == OPERATOR_USER and event.get("responseStatus", {}).get("code") == 409:
            ref = event["objectRef"]
            key = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            conflicts[key] = conflicts.get(key, 0) + 1
    assert conflicts.get("modeldeployments/status"), f"the writer caused no 409 on the operator's status writes: {conflicts}"
    figure(f"concurrent writer ({writer.writes} annotation bumps, {sum(writer.conflicts.values())} 409s on its "
           f"child PUTs; the operator got 409s {conflicts}): promoted with exact children "
           f"{time.monotonic() - stopped:.1f}s after the writer stopped (resync 15s)")


def test_operator_sigkilled_at_random_points(plane, api, supervised, ns, monitor):
    """SIGKILL at seeded random moments of rollouts (MLSD_FAULT_KILLS, MLSD_FAULT_SEED); the
    supervisor restarts it at once, the new process waits for the 4 s Lease to lapse."""
    rng = random.Random(SEED)
    names, kills, resumes = [], 0, []
    while kills < KILLS:
        name = f"kill-{len(names)}"
        names.append(name)
        apply(plane, ns, rollout_manifest(name, [10, 25, 40, 55, 70, 85], interval="2s"))
        for _ in range(min(3, KILLS - kills)):
            time.sleep(rng.uniform(0.0, 6.0))
            before = step_of(api, ns, name)
            supervised.kill()
            kills += 1
            killed = time.monotonic()
            wait(supervised, lambda: supervised.operator.process.poll() is None and
                 ((step_of(api, ns, name) or -1) > (before if before is not None else -1) or promoted(api, ns, name)),
                 f"progress after kill {kills}", timeout=90)
            resumes.append(time.monotonic() - killed)
    seconds = converge(supervised, api, ns, names, "after the kills")
    check_history_and_safety(api, ns, names, monitor)
    figure(f"SIGKILL x{kills} (seed {SEED}) over {len(names)} rollouts: progress resumed {min(resumes):.1f}-"
           f"{max(resumes):.1f}s (mean {sum(resumes) / len(resumes):.1f}s) after a kill (lease 4s + start), all "
           f"promoted with exact children {seconds:.1f}s after the last; peak operator RSS {supervised.peak_mib:.0f} MiB")
