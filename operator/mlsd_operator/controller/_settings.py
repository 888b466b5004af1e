"""Operator-wide settings: flags of `mlsd operator`, or MLSD_* environment variables (the chart's values)."""

from __future__ import annotations

import json
import os

from pydantic import BaseModel, ConfigDict

from mlsd_operator.builders import RenderConfig
from mlsd_operator.builders._config import DEFAULT_PREDICTOR_IMAGE, DEFAULT_TRITON_IMAGE
from mlsd_contract.api import GatewayRef, Toleration


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespaces: tuple[str, ...] = ()          # empty: every namespace
    predictor_image: str = DEFAULT_PREDICTOR_IMAGE
    triton_image: str = DEFAULT_TRITON_IMAGE
    gateway: str | None = None                # NAMESPACE/NAME of the default Gateway
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    metrics_port: int = 9090
    health_port: int = 8080
    dependency_retry_seconds: float = 30.0
    rollout_tick_seconds: float = 10.0
    shadow_window_seconds: float = 60.0
    gpu_tolerations: tuple[Toleration, ...] | None = None     # None: the builders' default
    network_policy: bool = False              # MLSD_NETWORK_POLICY: a NetworkPolicy per ModelDeployment
    network_policy_ingress_namespaces: tuple[str, ...] = ()   # MLSD_NETWORK_POLICY_INGRESS_NAMESPACES (a,b)
    network_policy_prometheus_namespace: str = "monitoring"   # MLSD_NETWORK_POLICY_PROMETHEUS_NAMESPACE

    @classmethod
    def from_env(cls) -> "OperatorSettings":
        env = os.environ
        values: dict[str, object] = {}
        if env.get("MLSD_NAMESPACES"):
            values["namespaces"] = tuple(n.strip() for n in env["MLSD_NAMESPACES"].split(",") if n.strip())
        for key in ("predictor_image", "triton_image", "gateway", "prometheus_url"):
            if env.get(f"MLSD_{key.upper()}"):
                values[key] = env[f"MLSD_{key.upper()}"]
        for key in ("metrics_port", "health_port"):
            if env.get(f"MLSD_{key.upper()}"):
                values[key] = int(env[f"MLSD_{key.upper()}"])
        for key in ("dependency_retry_seconds", "rollout_tick_seconds", "shadow_window_seconds"):
            if env.get(f"MLSD_{key.upper()}"):
                values[key] = float(env[f"MLSD_{key.upper()}"])
        if env.get("MLSD_NETWORK_POLICY"):
            values["network_policy"] = env["MLSD_NETWORK_POLICY"].strip().lower() in ("1", "true", "yes", "on")
        if env.get("MLSD_NETWORK_POLICY_INGRESS_NAMESPACES"):
            values["network_policy_ingress_namespaces"] = tuple(
                n.strip() for n in env["MLSD_NETWORK_POLICY_INGRESS_NAMESPACES"].split(",") if n.strip())
        if env.get("MLSD_NETWORK_POLICY_PROMETHEUS_NAMESPACE"):
            values["network_policy_prometheus_namespace"] = env["MLSD_NETWORK_POLICY_PROMETHEUS_NAMESPACE"]
        if env.get("MLSD_GPU_TOLERATIONS"):
            values["gpu_tolerations"] = tuple(Toleration.model_validate(t)
                                              for t in json.loads(env["MLSD_GPU_TOLERATIONS"]))
        return cls(**values)

    def render_config(self) -> RenderConfig:
        gateway = None
        if self.gateway:
            namespace, _, name = self.gateway.rpartition("/")
            gateway = GatewayRef(name=name, namespace=namespace or None)
        extra = {} if self.gpu_tolerations is None else {"gpu_tolerations": self.gpu_tolerations}
        return RenderConfig(predictor_image=self.predictor_image, triton_image=self.triton_image,
                            gateway=gateway, prometheus_url=self.prometheus_url, network_policy=self.network_policy,
                            network_policy_ingress_namespaces=self.network_policy_ingress_namespaces,
                            network_policy_prometheus_namespace=self.network_policy_prometheus_namespace, **extra)
