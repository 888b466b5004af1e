"""Settings the builders take from the operator's configuration rather than from the spec."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from mlsd_contract.api import GatewayRef, Toleration

DEFAULT_PREDICTOR_IMAGE = "ghcr.io/mlsd-serving/predictor:0.1.0"
# The project's Triton image (predictors/Dockerfile --target triton: CPU, loads every case study);
# GPU users build predictors/Dockerfile.triton-ngc and set it here (the chart's tritonImage).
DEFAULT_TRITON_IMAGE = "ghcr.io/mlsd-serving/tritonserver:0.1.0"


class RenderConfig(BaseModel):
    """Operator-wide defaults (chart values / operator flags), not per-ModelDeployment choices."""

    model_config = ConfigDict(frozen=True)

    predictor_image: str = DEFAULT_PREDICTOR_IMAGE
    triton_image: str = DEFAULT_TRITON_IMAGE
    image_pull_policy: str = "IfNotPresent"
    gateway: GatewayRef | None = None
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    gpu_tolerations: tuple[Toleration, ...] = (
        Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
    )
    cluster_domain: str = "cluster.local"
    network_policy: bool = False
    """Render a NetworkPolicy per ModelDeployment (builders/_network.py)."""
    network_policy_ingress_namespaces: tuple[str, ...] = ()
    """Namespaces whose pods may call the predictors (gateway, KServe/Knative ingress)."""
    network_policy_prometheus_namespace: str = "monitoring"
