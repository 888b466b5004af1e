"""Security with real parts: the API server's own PodSecurity admission judges every workload the
operator and the chart create, and its audit log shows which verbs the operator really uses.

- Pod Security "restricted": a namespace labelled pod-security.kubernetes.io/enforce=restricted.
  Triton tracks: the operator creates the Deployments there and the real controller-manager's
  ReplicaSets must get their pods admitted. Every pod template the builders render (Deployments,
  CronJobs, Jobs) and the chart renders (operator Deployment, samples-cleanup Job) is also created
  as a server-side dry-run Pod, which returns PodSecurity's own message when one fails. KServe's
  controller does not run here (it needs its images), so its pod is built from the rendered
  InferenceService and ServingRuntime the way KServe merges them (runtime container + the
  predictor's model fields + the predictor's pod fields + the pvc:// volume) and dry-run created;
  KServe's own storage-initializer init container is KServe's configuration, not ours, and is left out.
- RBAC least privilege: the operator runs under its ServiceAccount bound to manifests/rbac (the
  chart renders the same rules: tests/unit/test_chart.py) through a scenario that uses every
  feature (rollout and promotion, shadow, runtime switches both ways, storage credentials, batch
  CronJob and on-demand Job, NetworkPolicy, leader election); the audit log's (group, resource,
  verb) triples of that ServiceAccount are compared with the granted ones. A granted verb never
  used fails unless UNUSED_BY_DESIGN gives the reason; a used verb not granted fails (403s too)."""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlsd_operator import _yaml
from mlsd_contract.api import ModelDeployment
from mlsd_contract.tracks import TrafficState
from mlsd_operator.builders import build_children
from tests._support import audited_plane
from tests.conftest import REPO, SAMPLES, canary, manifest
from tests.integration.fault_harness import GROUP, PLURAL, VERSION
from tests.integration.operator_harness import OperatorProcess, eventually
from tests.integration.rollout_harness import Evidence, PrometheusServer

OPERATOR_USER = "system:serviceaccount:mlsd-system:mlsd-operator"
ANALYSIS = {"minRequests": 0, "maxErrorRate": 0.05, "maxLatencyP99Ms": 5000, "maxPredictionDrift": 10, "failureLimit": 1}
# (apiGroup, resource, verb) granted but not seen in the scenario, each with the reason it stays.
UNUSED_BY_DESIGN = {
    ("mlsd.io", "modeldeployments/finalizers", "update"):
        "not a request: where the OwnerReferencesPermissionEnforcement admission plugin is on, it checks this "
        "permission when a child's ownerReference sets blockOwnerDeletion",
    ("networking.k8s.io", "networkpolicies", "delete"):
        "pruning after MLSD_NETWORK_POLICY is switched off; one operator run has one setting",
}


# -- Pod Security ------------------------------------------------------------------------------

def restricted_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})))
    return name


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return [spec["template"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    return []


def kserve_pods(children: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The predictor pods KServe would create: the ServingRuntime's container with the predictor's
    model fields merged over it, the predictor's pod-level fields, and the pvc:// model volume."""
    runtimes = {c["metadata"]["name"]: c for c in children if c["kind"] == "ServingRuntime"}
    pods = []
    for isvc in (c for c in children if c["kind"] == "InferenceService"):
        predictors = [("predictor", isvc["spec"]["predictor"])]
        predictors += [(f"canary-{i}", entry["predictor"]) for i, entry in enumerate(isvc["spec"].get("canary") or [])]
        for label, predictor in predictors:
            model = predictor["model"]
            runtime = runtimes[model["runtime"]]["spec"]
            container = copy.deepcopy(runtime["containers"][0])
            for key in ("env", "resources", "args", "securityContext", "ports", "volumeMounts"):
                if key in model:
                    container[key] = (container.get(key) or []) + model[key] if key == "env" else model[key]
            pod_spec = {k: v for k, v in predictor.items() if k not in (
                "model", "name", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "canaryTrafficPercent",
                "containerConcurrency", "timeout", "batcher", "logger", "annotations", "labels")}
            pod_spec["containers"] = [container]
            pod_spec["volumes"] = list(runtime.get("volumes") or [])
            if model["storageUri"].startswith("pvc://"):
                claim = model["storageUri"][len("pvc://"):].split("/")[0]
                pod_spec["volumes"].append({"name": "kserve-pvc-source",
                                            "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
                container.setdefault("volumeMounts", []).append({"name": "kserve-pvc-source", "mountPath": "/mnt/pvc",
                                                                 "readOnly": True})
            pods.append((f"{isvc['metadata']['name']} {label}", {"spec": pod_spec}))
    return pods


def dry_run_pod(api: client.ApiClient, namespace: str, template: dict[str, Any], name: str) -> str | None:
    """None when PodSecurity admits the pod, else the API server's message."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "psa-check-",
                                                           "labels": (template.get("metadata") or {}).get("labels") or {}},
           "spec": template["spec"]}
    try:
        client.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")
        return None
    except ApiException as error:
        return f"{name}: {error.status} {json.loads(error.body).get('message')}"


def security_specs() -> list[dict[str, Any]]:
    """Every sample, plus variants that render every kind of workload and track."""
    specs = [_yaml.load_all(path)[0] for path in SAMPLES]
    for runtime in ("triton", "kserve"):
        for mode in ({}, {"kserve": {"deploymentMode": "Serverless"}}) if runtime == "kserve" else ({},):
            specs.append(manifest(
                name=f"all-{runtime}", namespace="x", uid="00000000-0000-0000-0000-000000000001", runtime=runtime,
                **({"gateway": {"name": "gw"}} if runtime == "triton" else mode),
                model={"storageUri": "s3://models/ad/1", "storageSecretName": "s3-creds"},
                placement={"accelerator": "gpu", "gpu": {"count": 1}},
                canary=canary("2", analysis=ANALYSIS),
                shadow={"model": {"version": "3", "storageUri": "pvc://models/ad-click-prediction/3"}, "percent": 50}
                if runtime == "triton" else None,
                batch={"schedule": "0 2 * * *", "input": "pvc://data/in.npz", "output": "pvc://data/out"}))
    return specs


def test_the_namespace_really_enforces_restricted(api):
    """The negative control: a plain pod (no securityContext) is refused, so a pass below means something."""
    namespace = restricted_namespace(api, "psa-control")
    message = dry_run_pod(api, namespace, {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}, "plain pod")
    assert message and "violates PodSecurity" in message and "restricted" in message, message


def test_every_rendered_workload_passes_restricted(api):
    namespace = restricted_namespace(api, "psa-render")
    failures, checked = [], 0
    for body in security_specs():
        body = copy.deepcopy(body)
        body["metadata"].setdefault("namespace", namespace)
        body["metadata"].setdefault("uid", "00000000-0000-0000-0000-000000000002")
        mdep = ModelDeployment.model_validate(body)
        children = build_children(mdep, traffic=TrafficState(20) if mdep.spec.canary else None)
        for child in children:
            for template in pod_templates(child):
                checked += 1
                failures.append(dry_run_pod(api, namespace, template, f"{child['kind']} {child['metadata']['name']}"))
        for name, pod in kserve_pods(children):
            checked += 1
            failures.append(dry_run_pod(api, namespace, pod, f"KServe pod of {name}"))
    failures = [f for f in failures if f]
    assert checked >= 15, checked
    assert not failures, "\n".join(failures)


def test_the_charts_workloads_pass_restricted(api, tmp_path):
    from tests.unit.test_chart import render

    namespace = restricted_namespace(api, "psa-chart")
    docs = render({"samples": {"enabled": True}}, tmp_path, crds=False)
    templates = [(f"{d['kind']} {d['metadata']['name']}", t) for d in docs for t in pod_templates(d)]
    assert {"Deployment", "Job"} <= {name.split()[0] for name, _ in templates}, templates
    failures = [dry_run_pod(api, namespace, t, name) for name, t in templates]
    assert not any(failures), "\n".join(f for f in failures if f)


# -- the operator's scenario: restricted namespace + audit log ---------------------------------

@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    with audited_plane(tmp_path_factory.mktemp("security-plane")) as cp:
        yield cp


@pytest.fixture(scope="module")
def api(plane):
    with plane.api_client() as api_client:
        yield api_client


def _mdep(api, ns: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def _patch(api, ns: str, name: str, patch: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)


@pytest.fixture(scope="module")
def scenario(plane, api, models, tmp_path_factory):
    """Runs the operator through every feature in a restricted namespace; returns (namespace,
    audit events of the operator's ServiceAccount, the Deployments seen Available)."""
    work = tmp_path_factory.mktemp("security-operator")
    prometheus = PrometheusServer(work).start()
    evidence = Evidence(models, prometheus, work)      # the canaries' analyses see real requests
    ns = restricted_namespace(api, "secure")
    operator = OperatorProcess(plane, work / "operator.log", env={
        "MLSD_PROMETHEUS_URL": prometheus.url, "MLSD_ROLLOUT_TICK_SECONDS": "1", "MLSD_RESYNC_SECONDS": "5",
        "MLSD_SHADOW_WINDOW_SECONDS": "2", "MLSD_NETWORK_POLICY": "true"}).start(leading=True)
    apps = client.AppsV1Api(api)
    available: set[str] = set()

    def wait(predicate, what: str, timeout: float = 90):
        def check():
            available.update(d.metadata.name for d in apps.list_namespaced_deployment(ns).items
                             if (d.status.available_replicas or 0) > 0)
            return predicate()
        return eventually(operator, check, what, timeout)

    def apply(obj):
        evidence.register(ns, obj["metadata"]["name"])
        plane.kubectl("apply", "-n", ns, "-f", "-", input=_yaml.dump(obj))

    try:
        # Triton: canary walks and is promoted (old track pruned), shadow measured, a CronJob, an on-demand Job.
        apply(manifest(name="tri", namespace=None, runtime="triton", gateway={"name": "gw"},
                       model={"storageUri": "s3://models/ad/1", "storageSecretName": "s3-creds"},
                       canary={"model": {"version": "2", "storageUri": "s3://models/ad/2"}, "steps": [50],
                               "interval": "2s", "analysis": ANALYSIS},
                       shadow={"model": {"version": "3", "storageUri": "s3://models/ad/3"}, "percent": 10},
                       batch={"schedule": "0 2 * * *", "input": "pvc://data/in.npz", "output": "pvc://data/out"}))
        wait(lambda: _mdep(api, ns, "tri")["spec"]["model"]["version"] == "2", "tri's canary to be promoted")
        _patch(api, ns, "tri", {"metadata": {"annotations": {"mlsd.io/batch-run": "first"}}})
        wait(lambda: client.BatchV1Api(api).list_namespaced_job(ns).items, "the on-demand batch Job")
        # KServe with storage credentials (a ServiceAccount child) and a canary.
        apply(manifest(name="ks", namespace=None, runtime="kserve",
                       model={"storageUri": "s3://models/ad/1", "storageSecretName": "s3-creds"},
                       canary={"model": {"version": "2", "storageUri": "s3://models/ad/2",
                                         "storageSecretName": "s3-creds"}, "analysis": ANALYSIS}))
        custom = client.CustomObjectsApi(api)
        wait(lambda: custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices", "ks"),
             "ks's InferenceService")
        # Runtime switches both ways: every child kind is pruned once; batch removed: CronJob pruned.
        # tri scaled through KEDA ScaledObjects (the default metric, concurrency); ks on Triton
        # scales on cpu, an HPA, until its metric turns to rps below (the HPA is pruned).
        _patch(api, ns, "ks", {"spec": {"runtime": "triton", "gateway": {"name": "gw"},
                                        "autoscaling": {"metric": "cpu", "target": 70}}})
        _patch(api, ns, "tri", {"spec": {"runtime": "kserve", "gateway": None, "batch": None, "shadow": None}})
        wait(lambda: not custom.list_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices",
                                                              label_selector="mlsd.io/model-deployment=ks")["items"]
             and apps.list_namespaced_deployment(ns, label_selector="mlsd.io/model-deployment=ks").items
             and not apps.list_namespaced_deployment(ns, label_selector="mlsd.io/model-deployment=tri").items
             and not client.BatchV1Api(api).list_namespaced_cron_job(ns).items,
             "both runtime switches to be carried out")
        wait(lambda: "ks-v1" in available, "ks's Triton Deployment to get an available pod")
        autoscaling = client.AutoscalingV2Api(api)
        hpas = lambda: autoscaling.list_namespaced_horizontal_pod_autoscaler(  # noqa: E731
            ns, label_selector="mlsd.io/model-deployment=ks").items
        wait(hpas, "ks's HPA (cpu)")
        _patch(api, ns, "ks", {"spec": {"autoscaling": {"metric": "rps", "target": 50}}})
        wait(lambda: not hpas() and custom.list_namespaced_custom_object(
            "keda.sh", "v1alpha1", ns, "scaledobjects", label_selector="mlsd.io/model-deployment=ks")["items"],
            "ks's HPA pruned for a KEDA ScaledObject (rps)")
        time.sleep(6)     # one more resync and lease renewals
    finally:
        operator.stop()
        evidence.stop()
        prometheus.stop()
    events = []
    for line in plane.audit_log_path.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") == OPERATOR_USER and event.get("objectRef"):
            events.append(event)
    return ns, events, available


def test_operator_workloads_run_in_a_restricted_namespace(api, scenario):
    ns, _, available = scenario
    apps = client.AppsV1Api(api)
    # Every Deployment the scenario left, and the promoted canary before, got its pods admitted.
    assert {"tri-v1", "tri-v2", "tri-v3", "ks-v1"} <= available, available
    for rs in apps.list_namespaced_replica_set(ns).items:
        failure = [c.message for c in rs.status.conditions or [] if c.type == "ReplicaFailure"]
        assert not failure, f"{rs.metadata.name}: {failure}"


def _granted() -> set[tuple[str, str, str]]:
    out = set()
    for doc in _yaml.load_all(REPO / "manifests" / "rbac" / "role.yaml"):
        for rule in doc["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((group, resource, verb))
    return out


def test_rbac_grants_exactly_the_verbs_the_operator_uses(scenario):
    _, events, _ = scenario
    used, denied = set(), set()
    for event in events:
        ref = event["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        triple = (ref.get("apiGroup", ""), resource, event["verb"])
        used.add(triple)
        if event["verb"] == "patch" and event.get("responseStatus", {}).get("code") == 201:
            # A server-side apply that creates: the API server authorizes `create` too (its
            # createValidation), which the audit event does not list apart.
            used.add((triple[0], triple[1], "create"))
        if event.get("responseStatus", {}).get("code") == 403:
            denied.add(triple)
    granted = _granted()
    assert len(events) > 100, f"only {len(events)} audited requests of the operator: is the audit log on?"
    assert not denied, f"the operator was refused: {sorted(denied)}"
    assert not used - granted, f"used but not granted: {sorted(used - granted)}"
    unused = granted - used - set(UNUSED_BY_DESIGN)
    assert not unused, f"granted but never used (remove them, or give the reason in UNUSED_BY_DESIGN): {sorted(unused)}"
    print("RBAC used:", sorted(used))
