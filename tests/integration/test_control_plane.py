"""The local control plane itself: API server, scheduling onto kwok nodes, GPU taints, GC, cleanup."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlsd_devcluster import (
    ACCELERATOR_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    GPU_TAINT,
    KUBE_VERSION,
    ControlPlane,
    KubectlError,
    MissingBinariesError,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GPU_TOLERATION = client.V1Toleration(
    key=GPU_TAINT["key"], operator="Equal", value=GPU_TAINT["value"], effect=GPU_TAINT["effect"]
)


# -- small builders ---------------------------------------------------------------------------


def pod_spec(gpus: int = 0, tolerate_gpu: bool = False) -> client.V1PodSpec:
    requests = {"cpu": "100m", "memory": "64Mi"}
    limits = {GPU_RESOURCE: str(gpus)} if gpus else None
    if gpus:
        requests[GPU_RESOURCE] = str(gpus)
    return client.V1PodSpec(
        containers=[
            client.V1Container(
                name="main",
                image="registry.invalid/never-pulled:1",  # kwok runs nothing
                resources=client.V1ResourceRequirements(requests=requests, limits=limits),
            )
        ],
        tolerations=[GPU_TOLERATION] if tolerate_gpu else None,
    )


def pod(name: str, **spec_args) -> client.V1Pod:
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=pod_spec(**spec_args))


def deployment(name: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec()
            ),
        ),
    )


def is_ready(p: client.V1Pod) -> bool:
    conditions = p.status.conditions or []
    return p.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def node_names(api_client, accelerator: str) -> set[str]:
    nodes = client.CoreV1Api(api_client).list_node(label_selector=f"{ACCELERATOR_LABEL}={accelerator}")
    return {n.metadata.name for n in nodes.items}


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie runs nothing


# -- the API server ---------------------------------------------------------------------------


def test_pinned_versions_agree() -> None:
    out = subprocess.run(
        [REPO / "hack/control-plane.sh", "versions"], capture_output=True, text=True, check=True
    ).stdout
    assert f"kubernetes {KUBE_VERSION}" in out.splitlines()


def test_api_server_answers(control_plane: ControlPlane, api_client) -> None:
    assert control_plane.server.startswith("https://127.0.0.1:")
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert versions["clientVersion"]["gitVersion"] == KUBE_VERSION
    assert client.VersionApi(api_client).get_code().git_version == KUBE_VERSION
    # Admin is system:masters, and RBAC is the authorizer.
    assert control_plane.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"
    with pytest.raises(KubectlError, match="NotFound|not found"):
        control_plane.kubectl("get", "namespace", "does-not-exist")


def test_fake_nodes(api_client) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(api_client).list_node().items}
    assert node_names(api_client, "cpu") == {"kwok-cpu-0", "kwok-cpu-1"}
    assert node_names(api_client, "gpu") == {"kwok-gpu-0", "kwok-gpu-1"}
    for name in ("kwok-gpu-0", "kwok-gpu-1"):
        node = nodes[name]
        assert node.status.capacity[GPU_RESOURCE] == "4"
        assert node.status.allocatable[GPU_RESOURCE] == "4"
        assert node.metadata.labels[GPU_PRODUCT_LABEL] == "NVIDIA-L4"
        assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
            (GPU_TAINT["key"], GPU_TAINT["value"], GPU_TAINT["effect"])
        ]
    for name in ("kwok-cpu-0", "kwok-cpu-1"):
        assert GPU_RESOURCE not in nodes[name].status.allocatable
        assert not nodes[name].spec.taints


def test_namespace_fixture(namespace: str, api_client) -> None:
    ns = client.CoreV1Api(api_client).read_namespace(namespace)
    assert ns.status.phase == "Active"
    assert namespace.startswith("test-namespace-fixture-")


# -- controllers, scheduler, kwok -------------------------------------------------------------


def test_deployment_becomes_available_on_cpu_nodes(api_client, namespace, wait_for) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=3))

    def available():
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.available_replicas == 3 and status.ready_replicas == 3

    wait_for(available, timeout=60, what="Deployment web to have 3 available replicas")
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3 and all(is_ready(p) for p in pods)
    assert {p.spec.node_name for p in pods} <= node_names(api_client, "cpu")
    # The pods came from a ReplicaSet the controller-manager made.
    assert {p.metadata.owner_references[0].kind for p in pods} == {"ReplicaSet"}


def test_hpa_controller_acts(api_client, namespace, wait_for) -> None:
    # No metrics API here, but the HPA controller still enforces minReplicas before any metric.
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=1))
    hpa = client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="web"
            ),
            min_replicas=2,
            max_replicas=4,
        ),
    )
    client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(namespace, hpa)
    wait_for(
        lambda: apps.read_namespaced_deployment("web", namespace).spec.replicas == 2,
        timeout=30,
        what="the HPA to scale web up to minReplicas=2",
    )


def test_gpu_pods_land_only_on_gpu_nodes(api_client, namespace, wait_for) -> None:
    core = client.CoreV1Api(api_client)
    for i in range(3):
        core.create_namespaced_pod(namespace, pod(f"gpu-{i}", gpus=1, tolerate_gpu=True))

    def all_ready():
        pods = core.list_namespaced_pod(namespace).items
        return pods if len(pods) == 3 and all(is_ready(p) for p in pods) else None

    pods = wait_for(all_ready, timeout=60, what="3 GPU pods Running and Ready")
    assert {p.spec.node_name for p in pods} <= node_names(api_client, "gpu")


def test_pods_without_toleration_never_land_on_gpu_nodes(api_client, namespace, wait_for) -> None:
    core = client.CoreV1Api(api_client)
    # Enough CPU pods that, without the taint, spreading would put some on the GPU nodes.
    for i in range(8):
        core.create_namespaced_pod(namespace, pod(f"cpu-{i}"))
    # Asking for a GPU without tolerating the taint: no node fits.
    core.create_namespaced_pod(namespace, pod("gpu-untolerated", gpus=1))

    def cpu_pods_ready():
        pods = [p for p in core.list_namespaced_pod(namespace).items if p.metadata.name != "gpu-untolerated"]
        return pods if len(pods) == 8 and all(is_ready(p) for p in pods) else None

    pods = wait_for(cpu_pods_ready, timeout=60, what="8 CPU pods Running and Ready")
    assert {p.spec.node_name for p in pods} <= node_names(api_client, "cpu")

    def unschedulable():
        status = core.read_namespaced_pod("gpu-untolerated", namespace).status
        return any(
            c.type == "PodScheduled" and c.reason == "Unschedulable" for c in status.conditions or []
        ) and status

    status = wait_for(unschedulable, timeout=30, what="gpu-untolerated to be Unschedulable")
    assert status.phase == "Pending"
    assert core.read_namespaced_pod("gpu-untolerated", namespace).spec.node_name is None


def test_garbage_collection_by_owner_references(api_client, namespace, wait_for) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[reference])),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def child_gone():
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(child_gone, timeout=30, what="the garbage collector to delete the child")


# -- lifecycle ---------------------------------------------------------------------------------


def test_missing_binaries_name_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(MissingBinariesError, match=r"hack/control-plane\.sh build"):
        ControlPlane(bin_dir=tmp_path).start()


def test_stops_and_cleans_up_after_an_error() -> None:
    plane = ControlPlane()
    with pytest.raises(RuntimeError, match="boom"):
        with plane:
            assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
            pids, work_dir = plane.pids(), plane.work_dir
            raise RuntimeError("boom")
    assert set(pids) == {"etcd", "kube-apiserver"}
    assert all(process_gone(pid) for pid in pids.values())
    assert not work_dir.exists()


def test_killed_test_process_leaves_no_control_plane_behind(tmp_path: Path, wait_for) -> None:
    script = (
        "import json, sys, time\n"
        "from mlsd_devcluster import ControlPlane\n"
        f"plane = ControlPlane(work_dir={str(tmp_path)!r}).start()\n"
        "print(json.dumps(plane.pids()), flush=True)\n"
        "time.sleep(600)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = runner.stdout.readline()
        if not line:
            pytest.fail(f"control plane did not start:\n{runner.communicate()[1]}")
        pids = json.loads(line)
    finally:
        # SIGKILL: no finalizer, no atexit; only the kernel's parent-death signal is left.
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    assert set(pids) == {"etcd", "kube-apiserver"}
    wait_for(lambda: all(process_gone(p) for p in pids.values()), timeout=10, what="orphans to die")



def test_retries_when_a_picked_port_gets_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsd_devcluster import _launcher

    honest = _launcher._free_ports
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    picks = [[squatter.getsockname()[1], *honest(5)]]
    # The first pick hands etcd a port another process holds; the retry picks honestly.
    monkeypatch.setattr(_launcher, "_free_ports", lambda n: picks.pop() if picks else honest(n))
    with squatter, ControlPlane() as plane:
        assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
        assert "address already in use" in (plane.work_dir / "etcd.log").read_text()
