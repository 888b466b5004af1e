"""`helm install` of charts/mlsd-operator into the real control plane, then the operator itself run as
a local process exactly as the installed Deployment says (command, args, env, under the chart's
ServiceAccount), or as a container of the operator image this repository builds, with the chart's
security context; it brings a sample installed by the chart to Ready; `helm uninstall` then removes
everything but the CRD.

The operator Deployment's own pods land on kwok nodes, which play the kubelet without running
containers (there is no container engine here): they prove the Deployment is accepted, scheduled
and reported Available (`helm install --wait`), while the process below does the real work."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from mlsd_devcluster import images
from mlsd_operator import _yaml
from tests._support import pods
from tests.conftest import REPO, keda_crds_dir, upstream_crds_dir
from tests.integration.operator_harness import LocalOperator, free_port, model_store, token_kubeconfig
from tests.integration.operator_harness import eventually as shared_eventually
from tests.unit.test_chart import CHART, helm, values_file

VENV_BIN = Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin"
# What the chart creates (CRD aside), as kubectl resource names, for the uninstall check.
RELEASE_KINDS = "deployment,service,serviceaccount,role,rolebinding"
CLUSTER_KINDS = "clusterrole,clusterrolebinding"


def install_upstream_crds(plane) -> None:
    """KServe, Gateway API and KEDA CRDs only: ours comes from the chart's crds/ (or is already
    there, from another test of this session; Helm then leaves it alone)."""
    files = (sorted((upstream_crds_dir() / "kserve").glob("*.yaml")) + sorted((upstream_crds_dir() / "gateway-api").glob("*.yaml"))
             + sorted(keda_crds_dir().glob("keda.sh_*.yaml")))
    for path in files:
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))


class DeploymentProcess(LocalOperator):
    """The operator container of a rendered Deployment, run as a local process: the same command,
    args and env (downward-API fields resolved as the kubelet would), with its two ports moved to
    free ones so the test never collides with anything on this machine."""

    def __init__(self, deployment: dict[str, Any], kubeconfig: Path, log_path: Path):
        pod = deployment["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        self.pod_name = f"{deployment['metadata']['name']}-local"
        self.namespace = deployment["metadata"]["namespace"]
        self.health_port, self.metrics_port = free_port(), free_port()
        self.log_path = log_path
        self.env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/tmp"),
                    "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        for var in self.container["env"]:
            self.env[var["name"]] = var["value"] if "value" in var else self._field(var["valueFrom"])
        self.cwd = "/"

    def _field(self, source: dict[str, Any]) -> str:
        path = source["fieldRef"]["fieldPath"]
        return {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}[path]

    def argv(self) -> list[str]:
        command = list(self.container["command"])
        command[0] = str(VENV_BIN / command[0])          # `mlsd`, from this checkout's venv
        args = []
        for arg in self.container["args"]:
            if arg.startswith("--health-port="):
                arg = f"--health-port={self.health_port}"
            elif arg.startswith("--metrics-port="):
                arg = f"--metrics-port={self.metrics_port}"
            args.append(arg)
        return command + args

    def start(self) -> "DeploymentProcess":
        super().start(leading=True)
        return self

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


class DeploymentContainer(DeploymentProcess):
    """The operator container of a rendered Deployment, run from the operator image this repository
    builds (hack/images.sh) with podman: the chart's command, args, env, user, read-only root with only
    its /tmp emptyDir writable, capabilities dropped; on the host network (the control plane listens
    on 127.0.0.1) with its two ports moved to free ones, and the ServiceAccount's kubeconfig mounted."""

    def __init__(self, deployment: dict[str, Any], kubeconfig: Path, log_path: Path, image: str):
        super().__init__(deployment, kubeconfig, log_path)
        self.pod = deployment["spec"]["template"]["spec"]
        self.image = image
        self.kubeconfig = kubeconfig
        kubeconfig.chmod(0o644)         # readable by the container's uid, as a projected token is
        self.name = f"mlsd-test-operator-{uuid.uuid4().hex[:8]}"
        self.env = images.containers_env()

    def argv(self) -> list[str]:
        resolved = dict(self.container, env=[
            {"name": var["name"], "value": var["value"] if "value" in var else self._field(var["valueFrom"])}
            for var in self.container["env"]])
        ports = {f"--health-port={self.container_port('health')}": f"--health-port={self.health_port}",
                 f"--metrics-port={self.container_port('metrics')}": f"--metrics-port={self.metrics_port}"}
        return ["podman", *images.store_options(), *pods.run_args(
            self.image, resolved, name=self.name, pod_security=self.pod["securityContext"],
            volumes=self.pod["volumes"], host_network=True, replace=ports,
            extra_env={"KUBECONFIG": "/etc/mlsd/kubeconfig"},
            extra_mounts=["--volume", f"{self.kubeconfig}:/etc/mlsd/kubeconfig:ro"])]

    def container_port(self, name: str) -> int:
        return next(p["containerPort"] for p in self.container["ports"] if p["name"] == name)

    def rss_mib(self) -> float:
        """The container's main process (`mlsd operator`), not podman's."""
        pid = images.podman("inspect", "--format", "{{.State.Pid}}", self.name, check=False).stdout.strip()
        for line in (Path(f"/proc/{pid}/status").read_text().splitlines() if pid.isdigit() else []):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        super().stop()
        images.podman("rm", "--force", "--time", "5", self.name, check=False)


def run_samples_cleanup_hook(plane, release: str, namespace: str, tmp_path: Path) -> None:
    hooks = _yaml.load_all_text(kube_helm(plane, "get", "hooks", release, "-n", namespace).stdout)
    (job,) = [h for h in hooks if h["kind"] == "Job"]
    plane.kubectl("apply", "-f", "-", input=_yaml.dump_all([h for h in hooks if h["kind"] != "Job"]))
    pod = job["spec"]["template"]["spec"]
    kubeconfig = token_kubeconfig(plane, namespace, pod["serviceAccountName"], tmp_path / "hook.kubeconfig")
    (container,) = pod["containers"]
    command = [str(VENV_BIN / container["command"][0]), *container["command"][1:], *container["args"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=200, cwd="/",
                            env={"PATH": os.environ["PATH"], "KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 0, f"the samples-cleanup hook failed:\n{result.stdout}{result.stderr}"
    assert "deleting " in result.stdout


def eventually(operator: DeploymentProcess, predicate, what: str, timeout: float = 90) -> Any:
    return shared_eventually(operator, predicate, what, timeout)


def kube_helm(plane, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return helm(*args, "--kubeconfig", str(plane.kubeconfig_path), check=check)


def names(plane, kinds: str, *scope: str, selector: str) -> list[str]:
    out = plane.kubectl("get", kinds, *scope, "-l", selector, "-o", "name").stdout
    return sorted(out.split())


@pytest.fixture
def models_namespace(control_plane, api_client):
    """A second namespace, for the workloads: the operator lives in its own (the `namespace` fixture)."""
    name = f"models-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    pv = model_store(control_plane, name)
    yield name
    control_plane.kubectl("delete", "pv", pv, "--wait=false", check=False)
    core.delete_namespace(name)


@pytest.mark.parametrize("mode, runner", [("namespaced", "process"), ("cluster-wide", "process"),
                                          ("namespaced", "image")])
def test_helm_install_runs_a_sample_to_ready_and_uninstall_keeps_only_the_crd(
        mode, runner, control_plane, api_client, namespace, models_namespace, tmp_path):
    install_upstream_crds(control_plane)
    release = f"mlsd-{uuid.uuid4().hex[:6]}"
    values = {
        "samples": {"enabled": True, "namespace": models_namespace, "include": ["visual-search"]},
        # Short periods so the test does not wait on production timings.
        "leaseSeconds": 6, "dependencyRetrySeconds": 2,
    }
    if mode == "namespaced":
        values["watchNamespaces"] = [models_namespace]
    if runner == "image":
        reference = pods.build_or_fail(["operator"])["operator"]
        repository, tag = reference.rsplit(":", 1)
        values["image"] = {"repository": repository, "tag": tag, "pullPolicy": "Never"}
    started = time.monotonic()
    installed = kube_helm(control_plane, "install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "120s",
                          "-f", str(values_file(values, tmp_path))).stdout
    notes = installed[installed.index("NOTES:"):]
    assert f"rollout status deployment/{release}-mlsd-operator" in notes, notes
    assert (f"these namespaces only: {models_namespace}" if mode == "namespaced" else "every namespace") in notes, notes
    assert "WARNING" not in notes and "except the ModelDeployment CRD" in notes, notes
    install_seconds = time.monotonic() - started
    custom = client.CustomObjectsApi(api_client)
    apps = client.AppsV1Api(api_client)

    # The CRD came with the chart (or was there already), and the operator Deployment is Available
    # on (kwok) nodes with 2 replicas: the chart's pod spec passes the real API server and scheduler.
    control_plane.kubectl("get", "crd", "modeldeployments.mlsd.io")
    manifest = _yaml.load_all_text(kube_helm(control_plane, "get", "manifest", release, "-n", namespace).stdout)
    (deployment,) = [d for d in manifest if d["kind"] == "Deployment"]
    live = apps.read_namespaced_deployment(deployment["metadata"]["name"], namespace)
    assert (live.status.available_replicas, live.spec.replicas) == (2, 2)

    account = next(d for d in manifest if d["kind"] == "ServiceAccount")["metadata"]["name"]
    kubeconfig = token_kubeconfig(control_plane, namespace, account, tmp_path / "operator.kubeconfig")
    if runner == "image":
        operator = DeploymentContainer(deployment, kubeconfig, tmp_path / "operator.log", reference)
    else:
        operator = DeploymentProcess(deployment, kubeconfig, tmp_path / "operator.log")
    operator.start()
    try:
        phase = lambda: custom.get_namespaced_custom_object(  # noqa: E731
            "mlsd.io", "v1alpha1", models_namespace, "modeldeployments", "visual-search").get("status", {}).get("phase")
        started = time.monotonic()
        eventually(operator, lambda: phase() == "Ready", "the chart's visual-search sample to be Ready")
        ready_seconds = time.monotonic() - started
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease("mlsd-operator", namespace)
        assert lease.spec.holder_identity == operator.pod_name
        assert "mlsd_operator_reconciles_total" in operator.metrics()
        forbidden = [line for line in operator.log_tail(10_000).splitlines() if "Forbidden" in line]
        assert not forbidden, "the chart's RBAC misses a permission:\n" + "\n".join(forbidden[:5])
        rss = operator.rss_mib()
        print(notes if mode == "namespaced" else "")
        print(f"\n[{mode}, {runner}] helm install --wait {install_seconds:.1f}s; sample Ready {ready_seconds:.1f}s after "
              f"the operator led; operator RSS {rss:.0f} MiB")
        # `helm uninstall` first runs the chart's pre-delete hook, which deletes the samples while
        # the operator still runs (it must release its finalizer). kwok only pretends to run the
        # hook's pod, so the hook's objects are applied as Helm would and its container is run here.
        run_samples_cleanup_hook(control_plane, release, namespace, tmp_path)
        assert not custom.list_namespaced_custom_object(
            "mlsd.io", "v1alpha1", models_namespace, "modeldeployments")["items"], "the hook left a sample"
    finally:
        operator.stop()

    selector = f"app.kubernetes.io/instance={release}"
    assert names(control_plane, RELEASE_KINDS, "-n", namespace, selector=selector)
    kube_helm(control_plane, "uninstall", release, "-n", namespace, "--wait", "--timeout", "120s")
    assert names(control_plane, RELEASE_KINDS, "-n", namespace, selector=selector) == []
    assert names(control_plane, "rolebinding", "-n", models_namespace, selector=selector) == []
    assert names(control_plane, CLUSTER_KINDS, selector=selector) == []
    assert not custom.list_namespaced_custom_object(
        "mlsd.io", "v1alpha1", models_namespace, "modeldeployments")["items"], "the chart's sample survived"
    control_plane.kubectl("get", "crd", "modeldeployments.mlsd.io")   # Helm never deletes CRDs


def test_kustomize_base_is_accepted_by_the_api_server(control_plane):
    """`kubectl apply -k manifests/` as a server-side dry run: every object passes the real API
    server's validation and admission (tests/unit/test_chart.py shows it equals the chart)."""
    control_plane.kubectl("create", "namespace", "mlsd-system", check=False)   # dry-run objects need it
    out = control_plane.kubectl("apply", "-k", str(REPO / "manifests"), "--server-side", "--force-conflicts",
                                "--dry-run=server").stdout
    for expected in ("customresourcedefinition.apiextensions.k8s.io/modeldeployments.mlsd.io",
                     "clusterrole.rbac.authorization.k8s.io/mlsd-operator", "deployment.apps/mlsd-operator",
                     "service/mlsd-operator-metrics", "serviceaccount/mlsd-operator"):
        assert expected in out, out
