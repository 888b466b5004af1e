"""Runs the real operator (`python -m mlsd_operator operator`) as a subprocess against a control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from mlsd_operator import _yaml
from mlsd_contract.api import crd
from tests._support import free_port, poll, stop_process
from tests.conftest import REPO, keda_crds_dir, upstream_crds_dir


def install_crds(plane, *, kserve: bool = True, gateway_api: bool = True, keda: bool = True) -> None:
    """Our CRD plus the real upstream ones (KServe, Gateway API, KEDA: request-driven autoscaling
    needs it); server-side, since the KServe CRD is too big for client-side apply's last-applied
    annotation."""
    files = []
    upstream = upstream_crds_dir()
    if kserve:
        files += sorted((upstream / "kserve").glob("*.yaml"))
    if gateway_api:
        files += sorted((upstream / "gateway-api").glob("*.yaml"))
    if keda:
        files += sorted(keda_crds_dir().glob("keda.sh_*.yaml"))
    ours = Path(plane.work_dir) / "mlsd-crd.yaml"
    ours.write_text(_yaml.dump(crd()))
    for path in [ours, *files]:
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    names = ["modeldeployments.mlsd.io"] + [_yaml.load_all(f)[0]["metadata"]["name"] for f in files]
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])


def token_kubeconfig(plane, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig holding a token of a ServiceAccount: whoever uses it gets exactly the
    permissions that account was granted."""
    token = plane.kubectl("create", "token", service_account, "-n", namespace, "--duration=10h").stdout.strip()
    cluster = _yaml.load_all(plane.kubeconfig_path)[0]["clusters"][0]
    path.write_text(_yaml.dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [cluster],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": service_account}}],
    }))
    return path


def rbac_kubeconfig(plane, path: Path) -> Path:
    """The operator's own ServiceAccount, bound to manifests/rbac: the operator runs with exactly
    the permissions users grant it, so a missing verb fails a test."""
    plane.kubectl("apply", "-f", "-", input=_yaml.dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlsd-system"}}))
    plane.kubectl("apply", "-k", str(REPO / "manifests" / "rbac"))
    return token_kubeconfig(plane, "mlsd-system", "mlsd-operator", path)


def model_store(plane, namespace: str) -> str:
    """The `models` claim the samples' pvc:// URIs name, pre-bound to a PV so pods can schedule."""
    pv = f"models-{namespace}"[:63]
    plane.kubectl("apply", "-f", "-", input=_yaml.dump_all([
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                  "hostPath": {"path": "/srv/models"}, "claimRef": {"namespace": namespace, "name": "models"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": namespace},
         "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": pv,
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]))
    return pv


def eventually(process: "LocalOperator", predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Polls `predicate` until truthy and returns its value; on timeout fails the test with the
    operator's log tail (404s count as "not yet")."""
    def read() -> Any:
        try:
            return predicate()
        except ApiException as error:
            if error.status != 404:
                raise
            return None

    return poll(read, what, timeout=timeout, detail=lambda: f"--- operator log ---\n{process.log_tail()}")


class LocalOperator:
    """An operator process on this machine; subclasses say how it is started (`argv`)."""

    log_path: Path
    env: dict[str, str]
    cwd: Path | str = REPO
    health_port: int
    metrics_port: int
    process: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, *, leading: bool = False) -> "LocalOperator":
        """Starts and waits for /healthz; with `leading`, until it holds the Lease (not `standby`)."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                        cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as reply:
                    if reply.status == 200 and not (leading and b"standby" in reply.read()):
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"operator not healthy after 60s:\n{self.log_tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return reply.read().decode()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, as when a node dies."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process, group=True)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class OperatorProcess(LocalOperator):
    """`python -m mlsd_operator operator` from this checkout, with test-friendly timings."""

    def __init__(self, plane, log_path: Path, env: dict[str, str] | None = None, *, rbac: bool = True):
        self.plane = plane
        self.log_path = log_path
        kubeconfig = rbac_kubeconfig(plane, log_path.with_name("operator.kubeconfig")) if rbac \
            else Path(plane.kubeconfig_path)
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1",
                    "MLSD_RESYNC_SECONDS": "20", "MLSD_LEASE_SECONDS": "4", "MLSD_DEPENDENCY_RETRY_SECONDS": "2",
                    **(env or {})}

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "mlsd_operator", "operator",
                "--health-port", str(self.health_port), "--metrics-port", str(self.metrics_port)]
