"""Runs the real operator (`python -m mlsd_operator operator`) as a subprocess against a control plane."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlsd_operator import _yaml
from mlsd_operator.api import crd
from tests.conftest import REPO, upstream_crds_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def install_crds(plane, *, kserve: bool = True, gateway_api: bool = True) -> None:
    """Our CRD plus the real upstream ones; server-side, since the KServe CRD is too big for
    client-side apply's last-applied annotation."""
    files = []
    upstream = upstream_crds_dir()
    if kserve:
        files += sorted((upstream / "kserve").glob("*.yaml"))
    if gateway_api:
        files += sorted((upstream / "gateway-api").glob("*.yaml"))
    ours = Path(plane.work_dir) / "mlsd-crd.yaml"
    ours.write_text(_yaml.dump(crd()))
    for path in [ours, *files]:
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    names = ["modeldeployments.mlsd.io"] + [_yaml.load_all(f)[0]["metadata"]["name"] for f in files]
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])


def rbac_kubeconfig(plane, path: Path) -> Path:
    """A kubeconfig for the operator's own ServiceAccount, bound to manifests/rbac's ClusterRole:
    the operator runs with exactly the permissions users grant it, so a missing verb fails a test."""
    plane.kubectl("apply", "-f", "-", input=_yaml.dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlsd-system"}}))
    plane.kubectl("apply", "-k", str(REPO / "manifests" / "rbac"))
    token = plane.kubectl("create", "token", "mlsd-operator", "-n", "mlsd-system", "--duration=10h").stdout.strip()
    admin = _yaml.load_all(plane.kubeconfig_path)[0]
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [cluster],
        "users": [{"name": "mlsd-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "mlsd-operator"}}],
    }
    path.write_text(_yaml.dump(config))
    return path


class OperatorProcess:
    def __init__(self, plane, log_path: Path, env: dict[str, str] | None = None, *, rbac: bool = True):
        self.plane = plane
        self.log_path = log_path
        kubeconfig = rbac_kubeconfig(plane, log_path.with_name("operator.kubeconfig")) if rbac \
            else Path(plane.kubeconfig_path)
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1",
                    "MLSD_RESYNC_SECONDS": "20", "MLSD_LEASE_SECONDS": "4", "MLSD_DEPENDENCY_RETRY_SECONDS": "2", **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlsd_operator", "operator",
             "--health-port", str(self.health_port), "--metrics-port", str(self.metrics_port)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
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
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
