"""`ControlPlane`: etcd + kube-apiserver (+ controller-manager, scheduler, kwok) on loopback.

The API server is started the way controller-runtime's envtest starts it (secure port, client
cert auth against our CA, RBAC, service-account signing keys); the admin identity is a client
certificate in group `system:masters`. Every component binds 127.0.0.1 on a free port, so several
control planes (parallel test runs, a dev cluster next to a test run) do not collide.
"""

from __future__ import annotations

import atexit
import base64
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from ._binaries import BUILD_HINT, find_binaries
from ._kwok import FakeNode, default_nodes, kwok_argv
from ._pki import Pki, write_pki
from ._process import ManagedProcess, StartupError, http_ok, insecure_tls

# Control planes still running when the interpreter exits (a test run interrupted between fixture
# setup and teardown, a script that forgot `stop()`): stopped by the atexit hook below.
_RUNNING: set[ControlPlane] = set()


@atexit.register
def _stop_leftovers() -> None:
    for plane in list(_RUNNING):
        plane.stop()


_PORT_ATTEMPTS = 3


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"kubectl {' '.join(self.cmd[2:])} failed ({self.returncode}): {self.stderr.strip()}"


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is picked, so the ports differ from each other.
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ControlPlane:
    """A throwaway Kubernetes control plane; use as a context manager or call start()/stop().

    controller_manager: Deployments -> ReplicaSets -> Pods, garbage collection through
        ownerReferences, namespace deletion, HPA. Without it objects are stored, nothing reacts.
    scheduler: binds pods to nodes.
    kwok: fake nodes (`nodes`, by default 2 CPU + 2 GPU nodes) that turn Ready, and pods on them
        that reach Running/Ready.
    work_dir: where certs, kubeconfig, etcd data and one log per process go; a fresh temp dir
        (removed on a clean stop) when not given.
    bin_dir: take every binary from here instead of KUBEBUILDER_ASSETS / the build cache.
    die_with_parent: the kernel kills the processes if the thread that started them dies, even
        by SIGKILL. Start from the main (or another long-lived) thread; a detached dev cluster
        keeps this on too, its supervisor process being the parent.
    audit: the API server writes an audit log (`audit_log_path`, JSON lines, one event per
        request at level Metadata: who, verb, resource, response code), e.g. to compare the
        verbs a ServiceAccount uses with the ones it was granted.

    Fault injection: `stop_component(name)`, `start_component(name)` (same flags, ports and etcd
    data, waits until healthy again) and `restart_component(name)`.
    """

    def __init__(
        self,
        *,
        controller_manager: bool = False,
        scheduler: bool = False,
        kwok: bool = False,
        nodes: list[FakeNode] | None = None,
        work_dir: Path | str | None = None,
        bin_dir: Path | str | None = None,
        start_timeout: float = 120.0,
        die_with_parent: bool = True,
        audit: bool = False,
    ):
        if nodes and not kwok:
            raise ValueError("fake nodes need kwok=True")
        self.with_controller_manager = controller_manager
        self.with_scheduler = scheduler
        self.with_kwok = kwok
        self.nodes = list(nodes) if nodes is not None else (default_nodes() if kwok else [])
        self._own_work_dir = work_dir is None
        self._work_dir_arg = Path(work_dir) if work_dir is not None else None
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self.audit = audit
        self.audit_log_path = Path()
        self.processes: dict[str, ManagedProcess] = {}
        # How to tell each component is up again after `start_component`.
        self._healthy: dict[str, Callable[[], bool]] = {}
        self.work_dir: Path | None = None
        self.binaries: dict[str, Path] = {}
        self.server = ""
        self.kubeconfig_path = Path()

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        names = ["etcd", "kube-apiserver", "kubectl"]
        names += ["kube-controller-manager"] if self.with_controller_manager else []
        names += ["kube-scheduler"] if self.with_scheduler else []
        names += ["kwok"] if self.with_kwok else []
        self.binaries = find_binaries(names, self.bin_dir)
        if self.with_kwok:
            stages = self.binaries["kwok"].parent / "kwok-stages.yaml"
            if not stages.is_file():
                raise StartupError(f"{stages} is missing (kwok's default stages); {BUILD_HINT}")

        self.work_dir = self._work_dir_arg or Path(tempfile.mkdtemp(prefix="mlsd-control-plane-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_PORT_ATTEMPTS):
            try:
                return self._start_once()
            except StartupError as error:
                # A free port can be taken by another process between our pick and the bind.
                if "address already in use" not in str(error) or attempt + 1 == _PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> ControlPlane:
        _RUNNING.add(self)
        try:
            pki = write_pki(self.work_dir / "pki")
            etcd_client, etcd_peer, apiserver, kcm, scheduler, kwok = _free_ports(6)
            self._start_etcd(etcd_client, etcd_peer)
            self._start_apiserver(apiserver, etcd_client, pki)
            self._write_kubeconfig(pki)
            if self.with_controller_manager:
                self._start_controller_manager(kcm, pki)
            if self.with_scheduler:
                self._start_scheduler(scheduler)
            if self.with_kwok:
                self._start_kwok(kwok)
                self._create_nodes()
        except BaseException:
            # Also on Ctrl-C: nothing half-started outlives us. Logs stay for reading.
            self.stop(keep_logs=True)
            raise
        return self

    def stop(self, keep_logs: bool = False) -> None:
        """Stops every process (etcd last) and removes the work dir we made. Idempotent."""
        for name in reversed(list(self.processes)):
            self.processes[name].stop()
        self.processes.clear()
        _RUNNING.discard(self)
        if self.work_dir is None:
            return
        if self._own_work_dir and not keep_logs:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        else:
            # etcd's data is tens of MB and useless once etcd is gone; logs are worth keeping.
            shutil.rmtree(self.work_dir / "etcd-data", ignore_errors=True)

    @property
    def running(self) -> bool:
        return bool(self.processes) and all(p.running() for p in self.processes.values())

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    # -- fault injection ----------------------------------------------------------------------

    def stop_component(self, name: str, *, hard: bool = False) -> None:
        """Stops one component (SIGTERM, or SIGKILL with `hard`); the others keep running."""
        self.processes[name].stop(grace=0.0 if hard else 10.0)

    def start_component(self, name: str) -> None:
        """Starts a stopped component again with the same flags, and waits until it is healthy."""
        process = self.processes[name]
        process.respawn()
        process.wait_until(self._healthy[name], self.start_timeout, "healthy after a restart")

    def restart_component(self, name: str, *, hard: bool = False, down_seconds: float = 0.0) -> None:
        self.stop_component(name, hard=hard)
        if down_seconds:
            time.sleep(down_seconds)
        self.start_component(name)

    # -- clients ------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs the pinned kubectl against this control plane; raises with stderr on failure."""
        argv = [str(self.binaries["kubectl"]), f"--kubeconfig={self.kubeconfig_path}", *args]
        result = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def api_client(self):
        """A new `kubernetes.client.ApiClient` for the admin identity; close it when done."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig_path))

    # -- components ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        assert self.work_dir is not None
        process = ManagedProcess(
            name, argv, self.work_dir / f"{name}.log", die_with_parent=self.die_with_parent
        )
        self.processes[name] = process
        return process

    def _start_etcd(self, client_port: int, peer_port: int) -> None:
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                "--name=default",
                f"--data-dir={self.work_dir / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                # A test cluster's data is disposable; fsync dominates etcd latency on slow disks.
                "--unsafe-no-fsync=true",
            ],
        )
        self._healthy["etcd"] = lambda: http_ok(f"{client}/health", expect=b'"true"')
        etcd.wait_until(self._healthy["etcd"], self.start_timeout, "healthy")

    def _start_apiserver(self, port: int, etcd_port: int, pki: Pki) -> None:
        self.server = f"https://127.0.0.1:{port}"
        cert_dir = self.work_dir / "apiserver"
        cert_dir.mkdir(exist_ok=True)
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={cert_dir}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                # ClusterIPs from loopback too: with no kube-proxy nothing routes them, and a client
                # that tries one anyway stays on this machine.
                "--service-cluster-ip-range=127.3.0.0/16",
                "--allow-privileged=true",
                # As envtest: pods need no ServiceAccount object to exist first, so a test can
                # create a pod right after creating its namespace.
                "--disable-admission-plugins=ServiceAccount",
                # No kube-proxy, so the `kubernetes` Service needs no endpoints.
                "--endpoint-reconciler-type=none",
                *self._audit_flags(),
            ],
        )
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._healthy["kube-apiserver"] = lambda: http_ok(f"{self.server}/readyz", context=context)
        apiserver.wait_until(self._healthy["kube-apiserver"], self.start_timeout, "ready")

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.work_dir / "audit-policy.yaml"
        # Metadata: user, verb, resource, subresource, response code; no bodies (small log).
        policy.write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}],
        }))
        self.audit_log_path = self.work_dir / "audit.log"
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json", "--audit-log-mode=blocking"]

    def _write_kubeconfig(self, pki: Pki) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        # Certificates are embedded so the file can be copied anywhere and still work.
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mlsd-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "mlsd-admin",
                    "user": {
                        "client-certificate-data": b64(pki.admin_cert),
                        "client-key-data": b64(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "mlsd-local", "context": {"cluster": "mlsd-local", "user": "mlsd-admin"}}
            ],
            "current-context": "mlsd-local",
        }
        self.kubeconfig_path = self.work_dir / "kubeconfig"
        self.kubeconfig_path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        self.kubeconfig_path.chmod(0o600)

    def _component_argv(self, name: str, port: int) -> list[str]:
        """Flags kube-controller-manager and kube-scheduler share."""
        cert_dir = self.work_dir / name
        cert_dir.mkdir(exist_ok=True)
        kubeconfig = str(self.kubeconfig_path)
        return [
            str(self.binaries[name]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # There is no front proxy, so the request-header CA the components would otherwise
            # poll for (and log an error about, every second) does not exist.
            "--authentication-skip-lookup=true",
            # One instance: waiting for a lease would only delay the start.
            "--leader-elect=false",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            f"--cert-dir={cert_dir}",
        ]

    def _wait_healthz(self, process: ManagedProcess, port: int) -> None:
        url = f"https://127.0.0.1:{port}/healthz"
        context = insecure_tls()
        self._healthy[process.name] = lambda: http_ok(url, context=context)
        process.wait_until(self._healthy[process.name], self.start_timeout, "healthy")

    def _start_controller_manager(self, port: int, pki: Pki) -> None:
        argv = self._component_argv("kube-controller-manager", port) + [
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--use-service-account-credentials=false",
            # Default 15s: a test waiting for an HPA to act would mostly wait for this period.
            "--horizontal-pod-autoscaler-sync-period=2s",
        ]
        self._wait_healthz(self._spawn("kube-controller-manager", argv), port)

    def _start_scheduler(self, port: int) -> None:
        argv = self._component_argv("kube-scheduler", port)
        self._wait_healthz(self._spawn("kube-scheduler", argv), port)

    def _start_kwok(self, port: int) -> None:
        binary = self.binaries["kwok"]
        argv = kwok_argv(
            str(binary), str(self.kubeconfig_path), str(binary.parent / "kwok-stages.yaml"), port
        )
        kwok = self._spawn("kwok", argv)
        url = f"http://127.0.0.1:{port}/healthz"
        self._healthy["kwok"] = lambda: http_ok(url)
        kwok.wait_until(self._healthy["kwok"], self.start_timeout, "healthy")

    def _create_nodes(self) -> None:
        from kubernetes import client

        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            for node in self.nodes:
                core.create_node(node.manifest())
            names = {node.name for node in self.nodes}
            deadline = time.monotonic() + self.start_timeout
            while True:
                ready = {
                    n.metadata.name
                    for n in core.list_node().items
                    if _node_ready(n, untainted=self.with_controller_manager)
                }
                if names <= ready:
                    return
                if not self.processes["kwok"].running() or time.monotonic() > deadline:
                    raise self.processes["kwok"].fail(f"did not make nodes Ready ({ready})")
                time.sleep(0.2)


# Admission taints every new node not-ready; the controller-manager lifts it once kwok reports
# Ready. Until then the scheduler would skip the node, so a test's first pod would wait for it.
_NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def _node_ready(node, untainted: bool) -> bool:
    if not any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
        return False
    return not untainted or not any(t.key in _NOT_READY_TAINTS for t in node.spec.taints or [])
