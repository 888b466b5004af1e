"""KServe children: a ServingRuntime for the case study's predictor and one InferenceService.

Canary support differs by KServe deployment mode (docs/operator.md, "KServe modes"):
- Standard (KServe >= 0.20): the canary is an explicit `spec.canary[]` entry with its own
  predictor and `trafficPercent`; the stable predictor stays as it is.
- Serverless (Knative): `predictor.canaryTrafficPercent` splits between the latest revision
  (the canary model) and the last revision rolled out at 100% (the stable model).
Raw mode's old `canaryTrafficPercent` is never used: it was silently ignored there (kserve #5335).
"""

from __future__ import annotations

from typing import Any

from mlsd_contract import KSERVE_LAYOUT
from mlsd_contract.tracks import CANARY, STABLE, TrafficState
from mlsd_contract.api import (
    Batching, KServeDeploymentMode, ModelDeployment, ModelRef, Runtime, ScaleMetric, parse_duration,
)

from . import _common as c
from ._config import RenderConfig
from ._triton import KEDA_API

AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"

KSERVE_API = "serving.kserve.io/v1beta1"
KSERVE_RUNTIME_API = "serving.kserve.io/v1alpha1"
KSERVE_POD_LABEL = "serving.kserve.io/inferenceservice"   # KServe labels its predictor pods with the InferenceService
HTTP_PORT = 8080
GRPC_PORT = 8081


def model_format(mdep: ModelDeployment) -> str:
    return f"mlsd-{mdep.spec.case_study.value}"


def runtime_name(mdep: ModelDeployment) -> str:
    return c.dns_name(mdep.metadata.name, "runtime")


def build_serving_runtime(mdep: ModelDeployment, config: RenderConfig) -> dict[str, Any]:
    case = mdep.spec.case_study.value
    return {
        "apiVersion": KSERVE_RUNTIME_API,
        "kind": "ServingRuntime",
        "metadata": c.metadata(mdep, runtime_name(mdep), c.labels(mdep, component="serving-runtime")),
        "spec": {
            "supportedModelFormats": [{"name": model_format(mdep), "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2", "v1"],
            "multiModel": False,
            "annotations": {"prometheus.kserve.io/port": str(HTTP_PORT), "prometheus.kserve.io/path": "/metrics"},
            "containers": [{
                "name": "kserve-container",
                "image": config.predictor_image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["python", "-m", "mlsd_predictors.servers.kserve"],
                "args": [
                    f"--case_study={case}",
                    "--model_name={{.Name}}",
                    "--model_dir=/mnt/models",
                    f"--http_port={HTTP_PORT}",
                    f"--grpc_port={GRPC_PORT}",
                ],
                "ports": [{"containerPort": HTTP_PORT, "name": "http1", "protocol": "TCP"}],
                "terminationMessagePolicy": "FallbackToLogsOnError",   # its refusal becomes the pod's message
                "securityContext": c.RESTRICTED_CONTAINER_SECURITY,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def _model_spec(mdep: ModelDeployment, model: ModelRef, pod: c.PodPlacement, track: str) -> dict[str, Any]:
    return {
        "modelFormat": {"name": model_format(mdep)},
        # The predictor labels its metrics with the track (the analysis itself selects by version).
        "env": [{"name": "MLSD_TRACK", "value": track}, *_cache_env(mdep), *_batching_env(mdep.spec.batching)],
        "runtime": runtime_name(mdep),
        "protocolVersion": "v2",
        "storageUri": c.variant_uri(model, KSERVE_LAYOUT),
        "resources": pod.resources,
    }


def _cache_env(mdep: ModelDeployment) -> list[dict[str, str]]:
    cache = mdep.spec.cache
    if cache is None:
        return []
    return [{"name": "MLSD_CACHE_SIZE", "value": str(cache.size)},
            {"name": "MLSD_CACHE_TTL_SECONDS", "value": str(int(parse_duration(cache.ttl)))}]


def _placement_fields(pod: c.PodPlacement) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if pod.node_selector:
        fields["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        fields["tolerations"] = pod.tolerations
    return fields


def _batching_env(batching: Batching | None) -> list[dict[str, str]]:
    """spec.batching for the predictor's own micro-batcher, which serves v2 (REST and gRPC). KServe's
    agent batcher (`predictor.batcher`) handles the v1 protocol only: set there, the values would do
    nothing for the v2 traffic these predictors take."""
    if batching is None:
        return []
    return [{"name": "MLSD_MAX_BATCH_SIZE", "value": str(batching.max_batch_size)},
            {"name": "MLSD_MAX_LATENCY_MS", "value": str(batching.max_latency_ms)}]


def _inflight_query(mdep: ModelDeployment, metric: ScaleMetric) -> str:
    selector = f'namespace="{mdep.metadata.namespace}",model_deployment="{mdep.metadata.name}"'
    if metric == ScaleMetric.CONCURRENCY:
        return f"sum(mlsd_inflight_requests{{{selector}}})"
    return f"sum(rate(mlsd_requests_total{{{selector}}}[1m]))"


def _scaling(mdep: ModelDeployment, config: RenderConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """Predictor scaling fields and the ISVC annotations that select the autoscaler."""
    scaling = mdep.spec.autoscaling
    fields: dict[str, Any] = {"minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas}
    mode = mdep.spec.kserve.deployment_mode
    if mode == KServeDeploymentMode.SERVERLESS or scaling.metric in (ScaleMetric.CPU, ScaleMetric.MEMORY):
        fields |= {"scaleMetric": scaling.metric.value, "scaleTarget": scaling.target}
        annotations = {} if mode == KServeDeploymentMode.SERVERLESS else {AUTOSCALER_CLASS: "hpa"}
        return fields, annotations
    # Standard mode's HPA only knows cpu and memory: concurrency and rps go through KEDA on Prometheus.
    fields["autoScaling"] = {"metrics": [{
        "type": "External",
        "external": {
            "metric": {"backend": "prometheus", "serverAddress": config.prometheus_url,
                       "query": _inflight_query(mdep, scaling.metric)},
            "target": {"type": "AverageValue", "averageValue": str(scaling.target)},
        },
    }]}
    return fields, {AUTOSCALER_CLASS: "keda"}


def required_apis(child: dict[str, Any]) -> list[tuple[str, str]]:
    """The APIs a child needs served to work: its own, and for an InferenceService that asks KServe
    for KEDA autoscaling, KEDA's ScaledObject (KServe creates one and fails the whole
    InferenceService with `no matches for kind "ScaledObject"` when KEDA is not installed)."""
    needed = [(child["apiVersion"], child["kind"])]
    annotations = child.get("metadata", {}).get("annotations") or {}
    if child["kind"] == "InferenceService" and annotations.get(AUTOSCALER_CLASS) == "keda":
        needed.append((KEDA_API, "ScaledObject"))
    return needed


def storage_service_account_name(mdep: ModelDeployment, model: ModelRef) -> str:
    return c.dns_name(c.version_name(mdep, model.version), "storage")


def build_storage_service_account(mdep: ModelDeployment, model: ModelRef, track: str) -> dict[str, Any]:
    """KServe's documented way to credentials (docs/operator.md): a ServiceAccount that lists the
    Secret, named as the predictor's serviceAccountName. KServe's webhook then gives the storage
    initializer secretKeyRef variables (and a mount for GCS): the values stay in the Secret; the
    operator only writes its name. No token: the predictor does not talk to the API server."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": c.metadata(mdep, storage_service_account_name(mdep, model),
                               c.labels(mdep, component="storage-credentials", version=model.version, track=track)),
        "automountServiceAccountToken": False,
        "secrets": [{"name": model.storage_secret_name}],
    }


def _service_account(mdep: ModelDeployment, model: ModelRef) -> dict[str, Any]:
    if model.storage_secret_name is None:
        return {}
    return {"serviceAccountName": storage_service_account_name(mdep, model)}


def canary_predictor_name(mdep: ModelDeployment, version: str) -> str:
    return c.dns_name("v" + version, max_length=40)


def _track_labels(version: str, track: str) -> dict[str, str]:
    """Pod labels of one track's predictor. KServe gives every predictor pod, the canary's too, the
    InferenceService's own labels (which name the stable version) unless the predictor spec
    overrides them: without these a canary pod would be scraped and selected as the stable version."""
    return {c.LABEL_VERSION: version, "app.kubernetes.io/version": version, c.LABEL_TRACK: track}


def kserve_deployments(mdep: ModelDeployment, versions: list[str]) -> dict[str, str]:
    """version -> the Deployment KServe's Standard mode makes for it (stable first in `versions`):
    `<isvc>-predictor` and `<isvc>-<canary predictor name>-predictor` (KServe's
    constants.PredictorServiceName). Serverless makes Knative revisions instead: empty."""
    if mdep.spec.kserve.deployment_mode == KServeDeploymentMode.SERVERLESS:
        return {}
    name = mdep.metadata.name
    out = {versions[0]: f"{name}-predictor"}
    out |= {v: f"{name}-{canary_predictor_name(mdep, v)}-predictor" for v in versions[1:]}
    return out


def build_inference_service(mdep: ModelDeployment, config: RenderConfig, traffic: TrafficState) -> dict[str, Any]:
    spec = mdep.spec
    c.check_pullable(spec.model, Runtime.KSERVE)
    pod = c.placement(mdep, config)
    scaling, annotations = _scaling(mdep, config)
    mode = spec.kserve.deployment_mode
    annotations = {"serving.kserve.io/deploymentMode": mode.value, c.ANNOTATION_PLACEMENT: pod.reason} | annotations

    predictor: dict[str, Any] = {
        "model": _model_spec(mdep, spec.model, pod, STABLE),
        "labels": _track_labels(spec.model.version, STABLE),
        **scaling,
        **_placement_fields(pod),
        **_service_account(mdep, spec.model),
    }
    isvc_spec: dict[str, Any] = {"predictor": predictor}
    canary = traffic.canary(mdep)
    if canary is not None:
        c.check_pullable(canary, Runtime.KSERVE)
        if mode == KServeDeploymentMode.STANDARD:
            isvc_spec["canary"] = [{
                "trafficPercent": traffic.canary_percent,
                "predictor": {
                    "name": canary_predictor_name(mdep, canary.version),
                    # The v0.20 CRD requires the canary model's container name (the stable one defaults).
                    "model": {"name": "kserve-container", **_model_spec(mdep, canary, pod, CANARY)},
                    "labels": _track_labels(canary.version, CANARY),
                    **_placement_fields(pod),
                    **_service_account(mdep, canary),
                },
            }]
        else:
            # Serverless: the latest revision is the canary; the previous one keeps serving as stable.
            predictor["model"] = _model_spec(mdep, canary, pod, CANARY)
            predictor["labels"] = _track_labels(canary.version, CANARY)    # the new revision's pods
            predictor["canaryTrafficPercent"] = traffic.canary_percent
            predictor.pop("serviceAccountName", None)     # the new revision's pods are the canary's
            predictor |= _service_account(mdep, canary)

    object_labels = c.labels(mdep, component="predictor", version=spec.model.version, track=STABLE)
    if canary is not None:
        annotations["mlsd.io/canary-version"] = canary.version
    return {
        "apiVersion": KSERVE_API,
        "kind": "InferenceService",
        "metadata": c.metadata(mdep, mdep.metadata.name, object_labels, annotations),
        "spec": isvc_spec,
    }


def build_kserve(mdep: ModelDeployment, config: RenderConfig, traffic: TrafficState) -> list[dict[str, Any]]:
    accounts = []
    for track in traffic.tracks(mdep):
        if not track.mirrored and track.model.storage_secret_name is not None:
            accounts.append(build_storage_service_account(mdep, track.model, track.name))
    # ServiceAccounts first: KServe resolves them when it creates the predictor pods.
    return [*accounts, build_serving_runtime(mdep, config), build_inference_service(mdep, config, traffic)]
