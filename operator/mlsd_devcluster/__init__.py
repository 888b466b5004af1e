"""A local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)
for integration tests and `mlsd dev-cluster`; binaries come from `hack/control-plane.sh build`.

    with ControlPlane(controller_manager=True, scheduler=True, kwok=True) as cp:
        cp.kubectl("get", "nodes")
"""

from ._binaries import KUBE_VERSION, MissingBinariesError, cache_bin_dir, find_binaries
from ._kwok import (
    ACCELERATOR_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    GPU_TAINT,
    FakeNode,
    default_nodes,
)
from ._launcher import ControlPlane, KubectlError
from ._process import StartupError

__all__ = [
    "ACCELERATOR_LABEL",
    "GPU_PRODUCT_LABEL",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "KUBE_VERSION",
    "ControlPlane",
    "FakeNode",
    "KubectlError",
    "MissingBinariesError",
    "StartupError",
    "cache_bin_dir",
    "default_nodes",
    "find_binaries",
]
