"""Fault injection around the real operator: a TCP proxy whose connections can be cut (watch
streams included), a supervisor that restarts an exited operator as the kubelet would
(restartPolicy: Always), a monitor that checks traffic safety continuously, and the checks every
fault test ends with (desired children exactly, nothing orphaned)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from mlsd_operator import _yaml
from mlsd_contract.api import ModelDeployment
from mlsd_contract.tracks import TrafficState
from mlsd_operator.builders import build_children
from mlsd_operator.controller._kube import CHILD_KINDS, Kube, ObjectKey, controller_uid
from mlsd_operator.controller._settings import OperatorSettings

GROUP, VERSION, PLURAL = "mlsd.io", "v1alpha1", "modeldeployments"


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the API server byte for byte (TLS passes through untouched);
    `cut()` resets every open connection at once, as a load balancer or a network blip would."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.cuts = 0
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                downstream.close()          # the API server is down: the client sees a reset
                continue
            with self._lock:
                self._open |= {downstream, upstream}
                self.connections += 1
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                if sock in self._open:
                    self._open.discard(sock)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()

    def cut(self) -> int:
        """Closes every open connection (both sides); returns how many were open."""
        with self._lock:
            socks = list(self._open)
        self._close(*socks)
        self.cuts += 1
        return len(socks) // 2

    def close(self) -> None:
        self.listener.close()
        self.cut()


def point_kubeconfig_at(kubeconfig: Path, server: str) -> None:
    config = _yaml.load_all(kubeconfig)[0]
    for entry in config["clusters"]:
        entry["cluster"]["server"] = server
    kubeconfig.write_text(_yaml.dump(config))


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM: the most resident memory the process ever had."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Supervisor(threading.Thread):
    """Restarts the operator whenever it exits (the kubelet's restartPolicy: Always, without the
    back-off), so a test observes what a Deployment-managed operator would do after a crash.
    Records every exit, and the peak RSS of each process just before it goes."""

    def __init__(self, operator):
        super().__init__(daemon=True)
        self.operator = operator
        self.exits: list[int] = []
        self.peak_mib = 0.0
        self._halt = threading.Event()
        self._paused = threading.Event()

    def sample_memory(self) -> None:
        process = self.operator.process
        if process is not None and process.poll() is None:
            self.peak_mib = max(self.peak_mib, peak_rss_mib(process.pid) or 0.0)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample_memory()
            process = self.operator.process
            if not self._paused.is_set() and process is not None and process.poll() is not None:
                self.exits.append(process.returncode)
                try:
                    self.operator.start()
                except RuntimeError:
                    time.sleep(1)           # the API server is still away: try again
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the operator now; the supervisor brings it back."""
        self.sample_memory()
        self.operator.kill()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        self.operator.stop()


@dataclass
class SafetyLog:
    violations: list[str] = field(default_factory=list)
    held_on_unavailable: int = 0      # samples where a weight already > 0 stayed on a track that lost its pods
    steps: dict[str, list[int]] = field(default_factory=dict)          # per ModelDeployment, in order seen
    failed_analyses: dict[str, set[int]] = field(default_factory=dict)
    api_errors: int = 0


class TrafficMonitor(threading.Thread):
    """Polls (every 0.25 s, admin identity, directly at the API server) each HTTPRoute of a
    namespace and the Deployments it sends traffic to. A violation: a backend's weight is raised
    from 0 (or from a lower value) while its Deployment has no available replica, once that
    route's stable track first was Available (before that the stable track is all there is).
    A raise first seen after a gap in polling (the API server was down) is judged by time: the
    operator's last write of the route against the moment the Deployment's Available condition
    went False (whole seconds; equal seconds count as before).
    Traffic already on a track when it loses its pods is counted apart (`held_on_unavailable`).
    Also records each canary's step and failedAnalyses."""

    def __init__(self, api_client: client.ApiClient, namespace: str):
        super().__init__(daemon=True)
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.namespace = namespace
        self.log = SafetyLog()
        self._armed: set[str] = set()
        self._weights: dict[tuple[str, str], int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._check()
            except Exception:       # ApiException, connection errors: the API server may be down, that's the test
                self.log.api_errors += 1
            time.sleep(0.25)

    def _check(self) -> None:
        # Routes first, Deployments after: a Deployment read before the route could predate the
        # availability the operator saw when it raised the weight (a false violation under load).
        # Read in this order, an unavailable track whose Available=False began before the route's
        # last write was unavailable when the weight was written.
        routes = self.custom.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", self.namespace,
                                                           "httproutes", _request_timeout=3)["items"]
        listed = self.apps.list_namespaced_deployment(self.namespace, _request_timeout=3).items
        deployments = {d.metadata.name: (d.status.available_replicas or 0) for d in listed}
        unavailable_since = {d.metadata.name: c.last_transition_time for d in listed
                             for c in d.status.conditions or [] if c.type == "Available" and c.status != "True"}
        for route in routes:
            name = route["metadata"]["name"]
            written = max((f["time"] for f in route["metadata"].get("managedFields") or []
                           if f.get("manager") == "mlsd-operator"), default=None)
            for rule in route["spec"].get("rules") or []:
                refs = rule.get("backendRefs") or []
                if refs and deployments.get(refs[0]["name"], 0) > 0:
                    self._armed.add(name)
                if name not in self._armed:
                    continue
                for ref in refs:
                    weight, key = ref.get("weight", 1), (name, ref["name"])
                    before = self._weights.get(key, 0)
                    self._weights[key] = weight
                    if weight > 0 and deployments.get(ref["name"], 0) == 0:
                        since = unavailable_since.get(ref["name"])
                        raised_while_unavailable = since is None or written is None or \
                            written > since.strftime("%Y-%m-%dT%H:%M:%SZ")
                        if weight > before and raised_while_unavailable:
                            self.log.violations.append(
                                f"{time.strftime('%H:%M:%S')} route {name}: {before}% -> {weight}% to {ref['name']} "
                                "which has no available replica")
                        else:
                            self.log.held_on_unavailable += 1
        for mdep in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                              _request_timeout=3)["items"]:
            canary = (mdep.get("status") or {}).get("canary") or {}
            name = mdep["metadata"]["name"]
            if canary.get("stepStartedAt"):
                steps = self.log.steps.setdefault(name, [])
                if not steps or steps[-1] != canary.get("step", 0):
                    steps.append(canary.get("step", 0))
                self.log.failed_analyses.setdefault(name, set()).add(canary.get("failedAnalyses", 0))

    def stop(self) -> SafetyLog:
        self._halt.set()
        self.join(10)
        return self.log


def kubelet_resync(api_client: client.ApiClient, namespace: str) -> int:
    """Marks Running pods on Ready nodes Ready again, as a kubelet's next status sync would.

    Stand-in for the one kubelet behaviour kwok lacks: after a control-plane outage the node
    lifecycle controller marks every pod NotReady (their nodes' heartbeats could not be stored);
    kwok brings the nodes back but never re-reports its pods, so they would stay NotReady forever."""
    core = client.CoreV1Api(api_client)
    ready_nodes = {n.metadata.name for n in core.list_node().items
                   if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}
    fixed = 0
    for pod in core.list_namespaced_pod(namespace).items:
        conditions = {c.type: c for c in pod.status.conditions or []}
        if pod.status.phase == "Running" and pod.spec.node_name in ready_nodes \
                and conditions.get("Ready") and conditions["Ready"].status != "True":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {"conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now} for t in ("Ready", "ContainersReady")]}})
            fixed += 1
    return fixed


def set_pods_ready(api_client: client.ApiClient, namespace: str, selector: str, ready: bool) -> int:
    """Reports the selected Running pods Ready or not, as their kubelet would when a readiness
    probe starts failing (or passing again); kwok runs no probes, so the test reports for it."""
    core = client.CoreV1Api(api_client)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    value = "True" if ready else "False"
    pods = [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items if p.status.phase == "Running"]
    for pod in pods:
        core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {"conditions": [
            {"type": t, "status": value, "lastTransitionTime": now} for t in ("Ready", "ContainersReady")]}})
    return len(pods)


def desired_children(mdep_body: dict[str, Any]) -> set[ObjectKey]:
    """What the builders say this ModelDeployment should own now (the operator's settings as in
    the tests: default images, no default gateway)."""
    mdep = ModelDeployment.model_validate({k: mdep_body[k] for k in ("apiVersion", "kind", "metadata", "spec", "status")
                                           if mdep_body.get(k) is not None})
    return {ObjectKey.of(c) for c in build_children(mdep, OperatorSettings().render_config(),
                                                    TrafficState.from_status(mdep))}


def children_report(api_client: client.ApiClient, namespace: str) -> dict[str, Any]:
    """Per ModelDeployment: missing and extra children; and managed objects no ModelDeployment of
    the namespace owns (orphans), plus ReplicaSets of Deployments that are gone."""
    kube = Kube(api_client)
    custom = client.CustomObjectsApi(api_client)
    report: dict[str, Any] = {"missing": {}, "extra": {}, "orphans": [], "stale_replicasets": []}
    owners = {}
    for body in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        meta = body["metadata"]
        owners[meta["uid"]] = meta["name"]
        owned = [ObjectKey.of(o) for o in kube.owned(namespace, meta["name"], meta["uid"])]
        wanted = desired_children(body)
        duplicates = {k for k in owned if owned.count(k) > 1}
        if wanted - set(owned):
            report["missing"][meta["name"]] = sorted(map(str, wanted - set(owned)))
        if (set(owned) - wanted) or duplicates:
            report["extra"][meta["name"]] = sorted(map(str, (set(owned) - wanted) | duplicates))
    for api_version, kind in CHILD_KINDS:
        items = kube.resource(api_version, kind).get(
            namespace=namespace, label_selector="app.kubernetes.io/managed-by=mlsd-operator").to_dict()
        for item in items.get("items") or []:
            if controller_uid(item) not in owners:
                report["orphans"].append(f"{kind}/{item['metadata']['name']}")
    apps = client.AppsV1Api(api_client)
    deployment_uids = {d.metadata.uid for d in apps.list_namespaced_deployment(namespace).items}
    for rs in apps.list_namespaced_replica_set(namespace).items:
        refs = rs.metadata.owner_references or []
        if not any(r.uid in deployment_uids for r in refs):
            report["stale_replicasets"].append(rs.metadata.name)
    return report


def clean(report: dict[str, Any]) -> bool:
    return not any(report.values())
