"""The pure builders: ModelDeployment -> children, for both runtimes and every spec feature."""

from __future__ import annotations

import pytest

from mlsd_operator import _yaml
from mlsd_contract.api import GatewayRef, ModelDeployment
from mlsd_contract.tracks import TrafficState
from mlsd_operator.builders import RenderConfig, UnsupportedSpec, build_children, decide_accelerator
from tests import schemas
from tests.conftest import SAMPLES, canary, manifest

UID = "5c3ad1f2-0000-4000-8000-000000000001"
GATEWAY = {"name": "gw", "namespace": "infra"}


def mdep(**kwargs) -> ModelDeployment:
    return ModelDeployment.model_validate(manifest(uid=UID, **kwargs))


def by_kind(children, kind):
    return [c for c in children if c["kind"] == kind]


def one(children, kind, name=None):
    found = [c for c in by_kind(children, kind) if name is None or c["metadata"]["name"] == name]
    assert len(found) == 1, [c["metadata"]["name"] for c in by_kind(children, kind)]
    return found[0]


def triton_pod(children, name):
    return one(children, "Deployment", name)["spec"]["template"]["spec"]


# -- every sample and many variants render objects the real schemas accept ---------------------

SCHEMA_CASES = {
    "kserve-standard-canary": dict(canary=canary()),
    "kserve-serverless-canary": dict(kserve={"deploymentMode": "Serverless"}, canary=canary(),
                                     autoscaling={"minReplicas": 0, "maxReplicas": 3}),
    "kserve-gpu": dict(caseStudy="visual-search", placement={"accelerator": "gpu", "gpu": {"product": "NVIDIA-L4"}}),
    "kserve-cpu-metric": dict(autoscaling={"metric": "cpu", "target": 70, "maxReplicas": 4}),
    "triton-canary-shadow": dict(runtime="triton", canary=canary(), gateway=GATEWAY,
                                 shadow={"model": {"version": "3", "storageUri": "s3://b/m/3"}, "percent": 20}),
    "triton-gpu-memory-metric": dict(runtime="triton", placement={"accelerator": "gpu", "gpu": {"count": 2}},
                                     autoscaling={"metric": "memory", "target": 80}),
    "triton-batching": dict(runtime="triton", batching={"maxBatchSize": 16, "maxLatencyMs": 3}),
}


@pytest.mark.parametrize("kwargs", SCHEMA_CASES.values(), ids=SCHEMA_CASES.keys())
@pytest.mark.parametrize("percent", [0, 25])
def test_children_validate_against_kubernetes_and_upstream_schemas(kwargs, percent):
    children = build_children(mdep(**kwargs), traffic=TrafficState(percent if "canary" in kwargs else None))
    assert children
    for child in children:
        schemas.validate(child)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_samples_render_valid_children(sample):
    obj = ModelDeployment.model_validate(_yaml.load_all(sample)[0])
    for child in build_children(obj, traffic=TrafficState(10) if obj.spec.canary else None):
        schemas.validate(child)


# -- common metadata ----------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["kserve", "triton"])
def test_every_child_is_owned_and_labelled(runtime):
    children = build_children(mdep(runtime=runtime, canary=canary(), gateway=GATEWAY), traffic=TrafficState(10))
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "team-a"
        (owner,) = meta["ownerReferences"]
        assert owner == {"apiVersion": "mlsd.io/v1alpha1", "kind": "ModelDeployment", "name": "demo",
                         "uid": UID, "controller": True, "blockOwnerDeletion": True}
        labels = meta["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "mlsd-operator"
        assert labels["app.kubernetes.io/instance"] == "demo"
        assert labels["mlsd.io/case-study"] == "ad-click-prediction"
        assert labels["mlsd.io/model-deployment"] == "demo"


def test_without_uid_no_owner_reference_is_invented():
    obj = ModelDeployment.model_validate(manifest())
    assert all("ownerReferences" not in c["metadata"] for c in build_children(obj))


def test_builders_are_pure_and_deterministic():
    obj = mdep(runtime="triton", canary=canary(), gateway=GATEWAY)
    assert build_children(obj, traffic=TrafficState(25)) == build_children(obj, traffic=TrafficState(25))


# -- precision and storage ----------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_precision_selects_the_variant_path(precision):
    kserve = build_children(mdep(model={"precision": precision}))
    isvc = one(kserve, "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"pvc://models/ad-click-prediction/1/kserve/{precision}"
    triton = build_children(mdep(runtime="triton", model={"precision": precision, "storageUri": "s3://bucket/ad/1"}))
    puller = triton_pod(triton, "demo-v1")["initContainers"][0]
    assert f"--source=s3://bucket/ad/1/triton/{precision}" in puller["args"]


def test_pvc_storage_is_mounted_read_only_for_the_puller():
    pod = triton_pod(build_children(mdep(runtime="triton")), "demo-v1")
    assert {"name": "model-store", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    puller = pod["initContainers"][0]
    assert "--source=/mnt/pvc/ad-click-prediction/1/triton/fp32" in puller["args"]
    assert {"name": "model-store", "mountPath": "/mnt/pvc", "readOnly": True} in puller["volumeMounts"]


@pytest.mark.parametrize("runtime", ["kserve", "triton"])
def test_file_uri_cannot_run_in_a_cluster(runtime):
    with pytest.raises(UnsupportedSpec, match="file:// is only readable by `mlsd serve`"):
        build_children(mdep(runtime=runtime, model={"storageUri": "file:///tmp/models/ad/1"}))


# -- placement -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "accelerator", "gpu", "expect_gpu", "reason"), [
    ("ad-click-prediction", "auto", {"count": 1}, False, "auto -> cpu: hashed sparse-embedding"),
    ("video-recommendation", "auto", {"count": 1}, False, "auto -> cpu: two-tower"),
    ("visual-search", "auto", {"count": 1}, True, "auto -> gpu: a CNN image encoder"),
    ("harmful-content", "auto", {"count": 2}, True, "auto -> gpu: the multimodal fusion"),
    ("visual-search", "auto", None, False, "no placement.gpu was given"),
    ("ad-click-prediction", "gpu", None, True, "accelerator: gpu requested"),
    ("visual-search", "cpu", None, False, "accelerator: cpu requested"),
])
def test_accelerator_decision_and_reason(case, accelerator, gpu, expect_gpu, reason):
    placement = {"accelerator": accelerator} | ({"gpu": gpu} if gpu else {})
    obj = mdep(caseStudy=case, placement=placement)
    decision = decide_accelerator(obj)
    assert decision.gpu is expect_gpu and reason in decision.reason
    for runtime in ("kserve", "triton"):
        child = build_children(mdep(caseStudy=case, placement=placement, runtime=runtime))[1 if runtime == "kserve" else 0]
        assert reason in child["metadata"]["annotations"]["mlsd.io/placement-reason"]


def test_gpu_placement_sets_limits_selector_and_toleration():
    placement = {"accelerator": "gpu", "gpu": {"count": 2, "product": "NVIDIA-L4"},
                 "nodeSelector": {"pool": "inference"},
                 "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]}
    pod = triton_pod(build_children(mdep(runtime="triton", placement=placement)), "demo-v1")
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2" and resources["requests"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"pool": "inference", "nvidia.com/gpu.product": "NVIDIA-L4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod["tolerations"]
    assert "--instance-kind=KIND_GPU" in pod["initContainers"][0]["args"]
    isvc = one(build_children(mdep(placement=placement)), "InferenceService")["spec"]["predictor"]
    assert isvc["model"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert isvc["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"


def test_cpu_placement_has_no_gpu_and_keeps_resource_overrides():
    placement = {"resources": {"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}}}
    pod = triton_pod(build_children(mdep(runtime="triton", placement=placement)), "demo-v1")
    resources = pod["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "--instance-kind=KIND_CPU" in pod["initContainers"][0]["args"]


def test_configured_gpu_tolerations_are_used():
    config = RenderConfig(gpu_tolerations=())
    pod = triton_pod(build_children(mdep(runtime="triton", placement={"accelerator": "gpu"}), config), "demo-v1")
    assert "tolerations" not in pod


# -- autoscaling and batching ------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["cpu", "memory"])
def test_triton_hpa_on_resource_metrics(metric):
    children = build_children(mdep(runtime="triton", autoscaling={"minReplicas": 2, "maxReplicas": 7,
                                                                 "metric": metric, "target": 60}))
    hpa = one(children, "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"] == [{"type": "Resource", "resource": {
        "name": metric, "target": {"type": "Utilization", "averageUtilization": 60}}}]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 7)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo-v1"}
    assert "replicas" not in one(children, "Deployment")["spec"], "the HPA owns replicas"
    assert not by_kind(children, "ScaledObject")


@pytest.mark.parametrize(("metric", "query"), [
    ("concurrency", 'sum(nv_inference_pending_request_count{namespace="team-a",model_deployment="demo",'
                    'version="1",model="ad-click-prediction"})'),
    ("rps", 'sum(rate(nv_inference_request_success{namespace="team-a",model_deployment="demo",'
            'version="1",model="ad-click-prediction"}[1m]))'),
])
def test_triton_request_metrics_scale_through_keda_on_tritons_own_series(metric, query):
    """No Pods metric needing an adapter nobody ships: KEDA's Prometheus trigger on nv_* series."""
    config = RenderConfig(prometheus_url="http://prom.monitoring:9090")
    children = build_children(mdep(runtime="triton", autoscaling={"minReplicas": 2, "maxReplicas": 7,
                                                                 "metric": metric, "target": 60}), config)
    assert not by_kind(children, "HorizontalPodAutoscaler"), "KEDA owns the HPA"
    scaled = one(children, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo-v1"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 7)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {"serverAddress": "http://prom.monitoring:9090", "query": query,
                                   "threshold": "60", "ignoreNullValues": "true"}
    assert "replicas" not in one(children, "Deployment")["spec"]


def test_kserve_keda_autoscaling_requires_kedas_api():
    """KServe creates the ScaledObject itself; the operator must see KEDA's API before applying."""
    from mlsd_operator.builders import required_apis

    isvc = one(build_children(mdep(autoscaling={"metric": "concurrency", "target": 4})), "InferenceService")
    assert ("keda.sh/v1alpha1", "ScaledObject") in required_apis(isvc)
    isvc = one(build_children(mdep(autoscaling={"metric": "cpu", "target": 60})), "InferenceService")
    assert required_apis(isvc) == [("serving.kserve.io/v1beta1", "InferenceService")]


@pytest.mark.parametrize(("mode", "metric", "autoscaler", "fields"), [
    ("Standard", "cpu", "hpa", {"scaleMetric": "cpu", "scaleTarget": 50}),
    ("Standard", "memory", "hpa", {"scaleMetric": "memory", "scaleTarget": 50}),
    ("Standard", "concurrency", "keda", {}),
    ("Standard", "rps", "keda", {}),
    ("Serverless", "concurrency", None, {"scaleMetric": "concurrency", "scaleTarget": 50}),
    ("Serverless", "rps", None, {"scaleMetric": "rps", "scaleTarget": 50}),
])
def test_kserve_autoscaling_per_mode(mode, metric, autoscaler, fields):
    isvc = one(build_children(mdep(kserve={"deploymentMode": mode},
                                   autoscaling={"minReplicas": 1, "maxReplicas": 5, "metric": metric, "target": 50})),
               "InferenceService")
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == mode
    assert annotations.get("serving.kserve.io/autoscalerClass") == autoscaler
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 5)
    for key, value in fields.items():
        assert predictor[key] == value
    if autoscaler == "keda":
        (external,) = predictor["autoScaling"]["metrics"]
        assert external["external"]["metric"]["backend"] == "prometheus"
        assert 'model_deployment="demo"' in external["external"]["metric"]["query"]
        assert external["external"]["target"] == {"type": "AverageValue", "averageValue": "50"}
        assert "scaleMetric" not in predictor


def test_batching_reaches_both_runtimes():
    batching = {"maxBatchSize": 48, "maxLatencyMs": 4}
    isvc = one(build_children(mdep(batching=batching, canary=canary("8")), traffic=TrafficState(25)),
               "InferenceService")
    # The predictors' own batcher (v2), not KServe's agent batcher (v1 only, so it would do nothing).
    for predictor in (isvc["spec"]["predictor"], isvc["spec"]["canary"][0]["predictor"]):
        assert "batcher" not in predictor
        env = {e["name"]: e["value"] for e in predictor["model"]["env"]}
        assert env["MLSD_MAX_BATCH_SIZE"] == "48" and env["MLSD_MAX_LATENCY_MS"] == "4"
    puller = triton_pod(build_children(mdep(runtime="triton", batching=batching)), "demo-v1")["initContainers"][0]
    assert "--max-batch-size=48" in puller["args"] and "--max-queue-delay-us=4000" in puller["args"]


# -- canary and shadow ----------------------------------------------------------------------------

def test_kserve_standard_canary_is_an_explicit_entry():
    isvc = one(build_children(mdep(canary=canary("8"), model={"precision": "int8"}), traffic=TrafficState(25)),
               "InferenceService")
    spec = isvc["spec"]
    assert spec["predictor"]["model"]["storageUri"].endswith("/1/kserve/int8")
    assert "canaryTrafficPercent" not in spec["predictor"]
    (entry,) = spec["canary"]
    assert entry["trafficPercent"] == 25
    assert entry["predictor"]["name"] == "v8"
    assert entry["predictor"]["model"]["storageUri"] == "pvc://models/ad-click-prediction/8/kserve/fp32"
    assert "minReplicas" not in entry["predictor"], "KServe canaries take no autoscaling fields"
    assert entry["predictor"]["model"]["env"] == [{"name": "MLSD_TRACK", "value": "canary"}]
    assert spec["predictor"]["model"]["env"] == [{"name": "MLSD_TRACK", "value": "stable"}]
    # KServe gives every predictor pod the InferenceService's labels (they name the stable version)
    # unless the predictor overrides them: each track's pods say which version and track they are.
    assert isvc["metadata"]["labels"]["mlsd.io/version"] == "1"
    assert entry["predictor"]["labels"] == {"mlsd.io/version": "8", "app.kubernetes.io/version": "8",
                                            "mlsd.io/track": "canary"}
    assert spec["predictor"]["labels"] == {"mlsd.io/version": "1", "app.kubernetes.io/version": "1",
                                           "mlsd.io/track": "stable"}


def test_kserve_serverless_canary_steps_canary_traffic_percent():
    isvc = one(build_children(mdep(canary=canary("8"), kserve={"deploymentMode": "Serverless"}),
                              traffic=TrafficState(10)), "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"].startswith("pvc://models/ad-click-prediction/8/")
    assert predictor["labels"]["mlsd.io/version"] == "8", "the new revision's pods are the canary's"
    assert "canary" not in isvc["spec"]


@pytest.mark.parametrize("runtime", ["kserve", "triton"])
def test_ended_canary_renders_no_canary_track(runtime):
    children = build_children(mdep(runtime=runtime, canary=canary(), gateway=GATEWAY), traffic=TrafficState(None))
    if runtime == "kserve":
        assert "canary" not in one(children, "InferenceService")["spec"]
    else:
        assert [d["metadata"]["name"] for d in by_kind(children, "Deployment")] == ["demo-v1"]


def test_triton_canary_tracks_and_weighted_route():
    children = build_children(mdep(runtime="triton", canary=canary("2"), gateway=GATEWAY), traffic=TrafficState(25))
    deployments = {d["metadata"]["name"]: d["metadata"]["labels"]["mlsd.io/track"] for d in by_kind(children, "Deployment")}
    assert deployments == {"demo-v1": "stable", "demo-v2": "canary"}
    autoscalers = by_kind(children, "HorizontalPodAutoscaler") + by_kind(children, "ScaledObject")
    assert sorted(a["spec"].get("minReplicas", a["spec"].get("minReplicaCount")) for a in autoscalers) == [1, 1]
    route = one(children, "HTTPRoute")["spec"]
    assert route["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "infra"}]
    (rule,) = route["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("demo-v1", 75), ("demo-v2", 25)]
    stable = one(children, "Service", "demo")
    assert stable["spec"]["selector"] == {"mlsd.io/model-deployment": "demo", "mlsd.io/version": "1"}


def test_triton_shadow_is_a_request_mirror_and_gets_no_weight():
    shadow = {"model": {"version": "9", "storageUri": "gs://b/m/9", "precision": "int8"}, "percent": 30}
    children = build_children(mdep(runtime="triton", shadow=shadow, gateway=GATEWAY))
    (rule,) = one(children, "HTTPRoute")["spec"]["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("demo-v1", 100)]
    assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"group": "", "kind": "Service", "name": "demo-v9", "port": 8000}, "percent": 30}}]
    assert one(children, "Deployment", "demo-v9")["metadata"]["labels"]["mlsd.io/track"] == "shadow"


def test_triton_route_uses_the_operator_gateway_when_spec_has_none():
    config = RenderConfig(gateway=GatewayRef(name="shared", namespace="gw-system"))
    route = one(build_children(mdep(runtime="triton", canary=canary()), config, TrafficState(0)), "HTTPRoute")
    assert route["spec"]["parentRefs"][0]["name"] == "shared"


def test_triton_canary_without_any_gateway_is_refused_not_silently_ignored():
    with pytest.raises(UnsupportedSpec, match="needs a Gateway"):
        build_children(mdep(runtime="triton", canary=canary()), traffic=TrafficState(10))


def test_triton_without_canary_or_gateway_has_no_route():
    assert not by_kind(build_children(mdep(runtime="triton")), "HTTPRoute")


def test_traffic_state_comes_from_status():
    obj = manifest(uid=UID, canary=canary("2"))
    assert TrafficState.from_status(ModelDeployment.model_validate(obj)) == TrafficState(0)
    obj["status"] = {"canary": {"version": "2", "trafficPercent": 25, "step": 1}}
    assert TrafficState.from_status(ModelDeployment.model_validate(obj)) == TrafficState(25)
    obj["status"]["history"] = [{"version": "2", "outcome": "RolledBack", "reason": "error rate"}]
    assert TrafficState.from_status(ModelDeployment.model_validate(obj)) == TrafficState(None)
    assert TrafficState.from_status(mdep()) == TrafficState(None)


def test_long_names_stay_valid_dns_labels():
    obj = ModelDeployment.model_validate(manifest(name="a" * 63, uid=UID, runtime="triton"))
    for child in build_children(obj):
        name = child["metadata"]["name"]
        assert len(name) <= 63 and name[0].isalpha() and not name.endswith("-")


def test_workloads_meet_the_restricted_pod_security_profile():
    pod = triton_pod(build_children(mdep(runtime="triton")), "demo-v1")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
