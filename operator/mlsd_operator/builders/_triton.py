"""Triton children: per track a Deployment (tritonserver + model-pulling init container), a
Service and an autoscaler (an HPA, or a KEDA ScaledObject for request-driven metrics); a stable Service; and one Gateway API HTTPRoute that carries the canary
split (weighted backendRefs) and the shadow (RequestMirror filter)."""

from __future__ import annotations

from typing import Any

from mlsd_contract import TRITON_LAYOUT
from mlsd_contract.tracks import STABLE, Track, TrafficState
from mlsd_contract.api import ModelDeployment, ModelRef, Runtime, ScaleMetric

from . import _common as c
from ._config import RenderConfig

KEDA_API = "keda.sh/v1alpha1"

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
MODEL_DIR = "/models"
PVC_MOUNT = "/mnt/pvc"

# What KEDA's Prometheus trigger sums per track for the request-driven metrics, from series
# tritonserver itself exports (docs/autoscaling.md): requests waiting in its queues, and
# successful requests per second, of the entry model (the ensemble's steps are not counted twice).
KEDA_QUERY = {
    ScaleMetric.CONCURRENCY: "sum(nv_inference_pending_request_count{{{selector}}})",
    ScaleMetric.RPS: "sum(rate(nv_inference_request_success{{{selector}}}[1m]))",
}


def _pull_source(model: ModelRef) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The puller's source, plus the volume and mount a pvc:// URI needs."""
    uri = c.variant_uri(model, TRITON_LAYOUT)
    if not uri.startswith("pvc://"):
        return uri, [], []
    claim, _, sub_path = uri.removeprefix("pvc://").partition("/")
    volume = {"name": "model-store", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    mount = {"name": "model-store", "mountPath": PVC_MOUNT, "readOnly": True}
    return f"{PVC_MOUNT}/{sub_path}", [volume], [mount]


CREDENTIALS_VOLUME = "storage-credentials"
CREDENTIALS_DIR = "/var/run/secrets/mlsd.io/storage"
GCS_CREDENTIALS_KEY = "gcloud-application-credentials.json"   # KServe's key for a GCS service-account file


def _credentials(model: ModelRef) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """What the puller needs to read `model.storageSecretName`, by reference only: the Secret's keys
    become environment variables (kserve-storage and boto3 read AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION), and for gs:// it is mounted so that
    GOOGLE_APPLICATION_CREDENTIALS can name KServe's key file. The same Secret serves both runtimes."""
    secret = model.storage_secret_name
    if secret is None:
        return {}, [], []
    fields: dict[str, Any] = {"envFrom": [{"secretRef": {"name": secret}}]}
    if not model.storage_uri.startswith("gs://"):
        return fields, [], []
    fields["env"] = [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{CREDENTIALS_DIR}/{GCS_CREDENTIALS_KEY}"}]
    volume = {"name": CREDENTIALS_VOLUME, "secret": {"secretName": secret, "defaultMode": 0o440}}
    mount = {"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True}
    return fields, [volume], [mount]


def _puller(mdep: ModelDeployment, model: ModelRef, pod: c.PodPlacement, config: RenderConfig,
            mounts: list[dict[str, Any]], source: str) -> dict[str, Any]:
    args = [
        f"--source={source}",
        f"--dest={MODEL_DIR}",
        f"--model-name={mdep.spec.case_study.value}",
        f"--instance-kind={'KIND_GPU' if pod.gpu else 'KIND_CPU'}",
    ]
    if mdep.spec.batching is not None:
        args += [f"--max-batch-size={mdep.spec.batching.max_batch_size}",
                 f"--max-queue-delay-us={mdep.spec.batching.max_latency_ms * 1000}"]
    credentials, _, credential_mounts = _credentials(model)
    return {
        "name": "model-puller",
        "image": config.predictor_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["python", "-m", "mlsd_predictors.pull"],
        "args": args,
        "terminationMessagePolicy": "FallbackToLogsOnError",   # its refusal becomes the pod's message
        **credentials,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": c.RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": [{"name": "models", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"},
                         *mounts, *credential_mounts],
    }


def _tritonserver(pod: c.PodPlacement, config: RenderConfig) -> dict[str, Any]:
    def probe(path: str, period: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": 3}

    return {
        "name": "tritonserver",
        "image": config.triton_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={MODEL_DIR}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
            f"--allow-gpu-metrics={'true' if pod.gpu else 'false'}",
            "--metrics-config=summary_latencies=true",     # the canary analysis' p99 (rollout/_promql.py)
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": pod.resources,
        "readinessProbe": probe("/v2/health/ready", 5),
        "livenessProbe": probe("/v2/health/live", 10) | {"initialDelaySeconds": 10},
        "startupProbe": probe("/v2/health/ready", 5) | {"failureThreshold": 60},
        "securityContext": c.RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": [{"name": "models", "mountPath": MODEL_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    }


def build_deployment(mdep: ModelDeployment, track: Track, config: RenderConfig) -> dict[str, Any]:
    c.check_pullable(track.model, Runtime.TRITON)
    pod = c.placement(mdep, config)
    source, volumes, mounts = _pull_source(track.model)
    selector = c.pod_selector(mdep, track.model.version)
    pod_labels = c.labels(mdep, component="predictor", version=track.model.version)
    pod_spec: dict[str, Any] = {
        "securityContext": c.RESTRICTED_POD_SECURITY,
        "automountServiceAccountToken": False,
        "initContainers": [_puller(mdep, track.model, pod, config, mounts, source)],
        "containers": [_tritonserver(pod, config)],
        "volumes": [
            {"name": "models", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
            *volumes,
            *_credentials(track.model)[1],
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if pod.node_selector:
        pod_spec["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        pod_spec["tolerations"] = pod.tolerations
    annotations = {c.ANNOTATION_PLACEMENT: pod.reason}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": c.metadata(mdep, c.version_name(mdep, track.model.version),
                               c.labels(mdep, component="predictor", version=track.model.version, track=track.name),
                               annotations),
        # replicas is left to the HPA: writing it here would fight the autoscaler on every apply.
        "spec": {
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                                    "prometheus.io/path": "/metrics"},
                },
                "spec": pod_spec,
            },
        },
    }


def _service(mdep: ModelDeployment, name: str, object_labels: dict[str, str],
             selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": c.metadata(mdep, name, object_labels),
        "spec": {
            "selector": selector,
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def build_track_service(mdep: ModelDeployment, track: Track) -> dict[str, Any]:
    version = track.model.version
    return _service(mdep, c.version_name(mdep, version),
                    c.labels(mdep, component="predictor", version=version, track=track.name),
                    c.pod_selector(mdep, version))


def build_stable_service(mdep: ModelDeployment) -> dict[str, Any]:
    """`<name>`: always the stable version, for clients that do not go through a Gateway."""
    version = mdep.spec.model.version
    return _service(mdep, mdep.metadata.name,
                    c.labels(mdep, component="front-door", version=version, track=STABLE),
                    c.pod_selector(mdep, version))


def _scaling_bounds(mdep: ModelDeployment, track: Track) -> tuple[int, int]:
    scaling = mdep.spec.autoscaling
    # Canary and shadow see a share of the traffic: they start at one replica and scale on the same target.
    min_replicas = scaling.min_replicas if track.name == STABLE else 1
    return min_replicas, max(scaling.max_replicas, min_replicas)


def build_autoscaler(mdep: ModelDeployment, track: Track, config: RenderConfig) -> dict[str, Any]:
    """cpu and memory: an HPA on the pods' resource metrics (metrics-server). concurrency and rps:
    a KEDA ScaledObject whose Prometheus trigger reads tritonserver's own series; KEDA then owns
    the HPA. Without KEDA's CRD the operator waits with DependencyMissing naming KEDA."""
    scaling = mdep.spec.autoscaling
    min_replicas, max_replicas = _scaling_bounds(mdep, track)
    name = c.version_name(mdep, track.model.version)
    metadata = c.metadata(mdep, name, c.labels(mdep, component="autoscaler", version=track.model.version,
                                               track=track.name))
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    scale_down = {"scaleDown": {"stabilizationWindowSeconds": 300}}
    if scaling.metric in (ScaleMetric.CPU, ScaleMetric.MEMORY):
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata,
            "spec": {
                "scaleTargetRef": target, "minReplicas": min_replicas, "maxReplicas": max_replicas,
                "metrics": [{"type": "Resource", "resource": {
                    "name": scaling.metric.value,
                    "target": {"type": "Utilization", "averageUtilization": scaling.target}}}],
                "behavior": scale_down,
            },
        }
    selector = ",".join(f'{key}="{value}"' for key, value in (
        ("namespace", mdep.metadata.namespace), ("model_deployment", mdep.metadata.name),
        ("version", track.model.version), ("model", mdep.spec.case_study.value)))
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": target,
            "minReplicaCount": min_replicas,
            "maxReplicaCount": max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"name": name, "behavior": scale_down}},
            "triggers": [{
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": config.prometheus_url,
                    "query": KEDA_QUERY[scaling.metric].format(selector=selector),
                    "threshold": str(scaling.target),
                    # No series yet (a track that has served nothing) is zero load, not an error.
                    "ignoreNullValues": "true",
                },
            }],
        },
    }


def needs_route(mdep: ModelDeployment, traffic: TrafficState) -> bool:
    return len(traffic.tracks(mdep)) > 1 or mdep.spec.gateway is not None


def build_route(mdep: ModelDeployment, config: RenderConfig, traffic: TrafficState) -> dict[str, Any]:
    gateway = mdep.spec.gateway or config.gateway
    if gateway is None:
        raise c.UnsupportedSpec(
            "runtime triton with a canary or shadow needs a Gateway for its HTTPRoute: "
            "set spec.gateway or start the operator with --gateway NAMESPACE/NAME")
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    if gateway.section_name:
        parent["sectionName"] = gateway.section_name

    def backend(version: str, weight: int | None = None) -> dict[str, Any]:
        ref: dict[str, Any] = {"group": "", "kind": "Service", "name": c.version_name(mdep, version), "port": HTTP_PORT}
        if weight is not None:
            ref["weight"] = weight
        return ref

    live = [t for t in traffic.tracks(mdep) if not t.mirrored]
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "backendRefs": [backend(t.version, t.percent) for t in live]}
    rule["filters"] = [{"type": "RequestMirror", "requestMirror": {"backendRef": backend(t.version), "percent": t.percent}}
                       for t in traffic.tracks(mdep) if t.mirrored]
    if not rule["filters"]:
        del rule["filters"]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": c.metadata(mdep, mdep.metadata.name, c.labels(mdep, component="route")),
        "spec": {"parentRefs": [parent], "rules": [rule]},
    }


def build_triton(mdep: ModelDeployment, config: RenderConfig, traffic: TrafficState) -> list[dict[str, Any]]:
    children: list[dict[str, Any]] = []
    for track in traffic.tracks(mdep):
        children += [build_deployment(mdep, track, config), build_track_service(mdep, track),
                     build_autoscaler(mdep, track, config)]
    children.append(build_stable_service(mdep))
    if needs_route(mdep, traffic):
        children.append(build_route(mdep, config, traffic))
    return children
