"""Fake nodes for kwok: CPU nodes and GPU nodes shaped like a cloud's L4 pool.

kwok only manages nodes carrying its annotation; it turns them Ready, keeps their leases fresh and
moves pods bound to them through the pod-ready stage (Running, Ready) without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
ACCELERATOR_LABEL = "mlsd.io/accelerator"
# What the NVIDIA GPU operator and the managed clouds put on GPU nodes, so that only pods which
# tolerate it (and ask for a GPU) land there.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class FakeNode:
    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"
    gpus: int = 0
    gpu_product: str = "NVIDIA-L4"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0

    def manifest(self) -> dict:
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            ACCELERATOR_LABEL: "gpu" if self.is_gpu else "cpu",
        }
        taints = []
        if self.is_gpu:
            resources[GPU_RESOURCE] = str(self.gpus)
            labels[GPU_PRODUCT_LABEL] = self.gpu_product
            taints.append(dict(GPU_TAINT))
        labels.update(self.labels)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION: "fake"},
            },
            "spec": {"taints": taints},
            # The scheduler counts extended resources from allocatable; node-initialize keeps both.
            "status": {"capacity": dict(resources), "allocatable": dict(resources)},
        }


def default_nodes() -> list[FakeNode]:
    """Two CPU nodes and two GPU nodes with 4 L4s each."""
    return [
        FakeNode("kwok-cpu-0"),
        FakeNode("kwok-cpu-1"),
        FakeNode("kwok-gpu-0", cpu="16", memory="64Gi", gpus=4),
        FakeNode("kwok-gpu-1", cpu="16", memory="64Gi", gpus=4),
    ]


def kwok_argv(binary: str, kubeconfig: str, stages: str, server_port: int) -> list[str]:
    """The controller flags kwokctl uses, with fake pod and node IPs kept on loopback."""
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        "--manage-nodes-with-label-selector=",
        # Fake pods get IPs from this range; loopback, so nothing ever sends them real traffic
        # outside this machine.
        "--cidr=127.2.0.1/16",
        "--node-ip=127.0.0.1",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{server_port}",
    ]
