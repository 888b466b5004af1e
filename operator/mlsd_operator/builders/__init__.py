"""Pure builders: a ModelDeployment (+ operator config + traffic state) -> the child objects."""

from typing import Any

from mlsd_contract.api import ModelDeployment
from mlsd_contract.tracks import TrafficState

from ._common import (
    ANNOTATION_PLACEMENT, LABEL_CASE_STUDY, LABEL_DEPLOYMENT, LABEL_TRACK, LABEL_VERSION,
    Decision, UnsupportedSpec, decide_accelerator, dns_name,
    labels, version_name,
)
from ._batch import (
    BATCH_RUN_ANNOTATION, batch_name, build_batch_cronjob, build_batch_job, build_retraining_job, retraining_job_name,
)
from ._config import RenderConfig
from ._kserve import (build_inference_service, build_kserve, build_serving_runtime, canary_predictor_name,
                      kserve_deployments, required_apis)
from ._network import build_network_policy
from ._runtimes import RUNTIMES, RuntimeBuilders
from ._triton import KEDA_API, build_autoscaler, build_deployment, build_route, build_triton


def build_children(mdep: ModelDeployment, config: RenderConfig | None = None,
                   traffic: TrafficState | None = None) -> list[dict[str, Any]]:
    """Every object the operator wants to exist for `mdep`, in apply order."""
    config = config or RenderConfig()
    traffic = traffic if traffic is not None else TrafficState.from_status(mdep)
    children = RUNTIMES[mdep.spec.runtime].build(mdep, config, traffic)
    if mdep.spec.batch is not None and mdep.spec.batch.schedule is not None:
        children.append(build_batch_cronjob(mdep, config))
    if config.network_policy:
        children.insert(0, build_network_policy(mdep, config))   # fenced before the pods exist
    return children


__all__ = [
    "BATCH_RUN_ANNOTATION", "batch_name", "build_batch_cronjob", "build_batch_job", "build_retraining_job",
    "retraining_job_name",
    "ANNOTATION_PLACEMENT", "LABEL_CASE_STUDY", "LABEL_DEPLOYMENT", "LABEL_TRACK", "LABEL_VERSION",
    "Decision", "RenderConfig",
    "UnsupportedSpec", "build_children", "build_network_policy", "build_deployment", "build_autoscaler", "KEDA_API", "build_inference_service",
    "build_kserve", "build_route", "build_serving_runtime", "build_triton", "decide_accelerator", "required_apis",
    "canary_predictor_name", "kserve_deployments",
    "dns_name", "labels", "version_name", "RUNTIMES", "RuntimeBuilders",
]
