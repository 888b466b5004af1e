"""The real operator (a `mlsd operator` subprocess running kopf) against a real kube-apiserver,
controller-manager, scheduler and kwok nodes, with the real KServe and Gateway API CRDs installed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from mlsd_operator import _yaml
from mlsd_devcluster import ControlPlane, KubectlError
from tests.conftest import REPO, canary, manifest
from tests.integration.operator_harness import OperatorProcess, eventually, install_crds, model_store

SAMPLES = REPO / "manifests" / "samples"
GROUP, VERSION, PLURAL = "mlsd.io", "v1alpha1", "modeldeployments"


@pytest.fixture(scope="module")
def crds(control_plane):
    install_crds(control_plane)


@pytest.fixture(scope="module")
def operator(control_plane, crds, tmp_path_factory):
    process = OperatorProcess(control_plane, tmp_path_factory.mktemp("operator") / "operator.log").start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def models_claim(control_plane, namespace):
    """The `models` claim the samples' pvc:// URIs name."""
    pv = model_store(control_plane, namespace)
    yield
    control_plane.kubectl("delete", "pv", pv, "--wait=false", check=False)


@pytest.fixture
def k8s(api_client):
    class Apis:
        custom = client.CustomObjectsApi(api_client)
        apps = client.AppsV1Api(api_client)
        core = client.CoreV1Api(api_client)
        autoscaling = client.AutoscalingV2Api(api_client)
    return Apis


def get_mdep(k8s, namespace: str, name: str) -> dict[str, Any]:
    return k8s.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def scaled_object(k8s, namespace: str, name: str) -> dict[str, Any]:
    return k8s.custom.get_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects", name)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def create(control_plane, namespace: str, obj: dict[str, Any]) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_yaml.dump(obj))


def patch_spec(k8s, namespace: str, name: str, spec: dict[str, Any]) -> None:
    k8s.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def deployment_names(k8s, namespace: str) -> list[str]:
    return sorted(d.metadata.name for d in k8s.apps.list_namespaced_deployment(namespace).items)


def route(control_plane, namespace: str, name: str) -> dict[str, Any]:
    return _yaml.load_all_text(control_plane.kubectl("get", "httproute", name, "-n", namespace, "-o", "yaml").stdout)[0]


def weights(control_plane, namespace: str, name: str) -> list[tuple[str, int]]:
    """The route's backend weights; [] while the route does not exist yet (Ready can be written
    before the route is applied, so waiting on weights must treat "not found" as "not yet")."""
    try:
        rule = route(control_plane, namespace, name)["spec"]["rules"][0]
    except KubectlError as error:
        if "NotFound" in (error.stderr or ""):
            return []
        raise
    return [(b["name"], b["weight"]) for b in rule["backendRefs"]]


def pod_nodes(k8s, namespace: str, version_label: str) -> set[str]:
    pods = k8s.core.list_namespaced_pod(namespace, label_selector=f"mlsd.io/version={version_label}").items
    return {p.spec.node_name for p in pods if p.spec.node_name}


def test_triton_sample_becomes_available_and_starts_its_canary(control_plane, operator, namespace, k8s):
    control_plane.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "video-recommendation.yaml"))
    name = "video-recs"
    eventually(operator, lambda: condition(get_mdep(k8s, namespace, name), "Ready").get("status") == "True",
               "the stable track to become Ready")
    assert deployment_names(k8s, namespace) == ["video-recs-v1", "video-recs-v2"]
    for deployment in ("video-recs-v1", "video-recs-v2"):
        eventually(operator, lambda: (k8s.apps.read_namespaced_deployment(deployment, namespace).status.available_replicas or 0) >= 1,
                   f"{deployment} to be Available")
    # Once the canary is available it gets the first step (5%); later steps need the analysis.
    eventually(operator, lambda: weights(control_plane, namespace, name) == [("video-recs-v1", 95), ("video-recs-v2", 5)],
               "the route to carry the first canary step")
    status = eventually(operator, lambda: (s := get_mdep(k8s, namespace, name)["status"]).get("canary", {}).get("trafficPercent") == 5 and s,
                        "status to show the canary at 5%")
    assert status["phase"] == "Progressing"
    assert status["stable"]["version"] == "1" and status["canary"]["version"] == "2"
    assert condition(get_mdep(k8s, namespace, name), "Progressing")["reason"] == "CanaryActive"
    assert all(node.startswith("kwok-cpu") for node in pod_nodes(k8s, namespace, "1") | pod_nodes(k8s, namespace, "2"))
    scaled = scaled_object(k8s, namespace, "video-recs-v1")["spec"]     # rps: KEDA, on tritonserver's series
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (2, 10)
    assert "nv_inference_request_success" in scaled["triggers"][0]["metadata"]["query"]
    printed = control_plane.kubectl("get", "mdep", "-n", namespace).stdout
    assert "video-recommendation" in printed and "Progressing" in printed


def test_gpu_sample_lands_on_gpu_nodes_only(control_plane, operator, namespace, k8s):
    control_plane.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "visual-search.yaml"))
    eventually(operator, lambda: get_mdep(k8s, namespace, "visual-search").get("status", {}).get("phase") == "Ready",
               "visual-search to be Ready")
    nodes = pod_nodes(k8s, namespace, "1") | pod_nodes(k8s, namespace, "2")
    assert nodes and all(node.startswith("kwok-gpu") for node in nodes), nodes
    (mirror,) = route(control_plane, namespace, "visual-search")["spec"]["rules"][0]["filters"]
    assert mirror["requestMirror"]["backendRef"]["name"] == "visual-search-v2"
    assert get_mdep(k8s, namespace, "visual-search")["status"]["shadow"]["version"] == "2"


def test_kserve_sample_is_rendered_and_waits_for_kserve(control_plane, operator, namespace, k8s):
    control_plane.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "ad-click-prediction.yaml"))
    ready = eventually(operator, lambda: condition(get_mdep(k8s, namespace, "ad-ctr"), "Ready") or None,
                       "a Ready condition")
    assert ready["status"] == "False" and ready["reason"] == "WaitingForKServe"
    isvc = k8s.custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices", "ad-ctr")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://models/ad-click-prediction/1/kserve/int8"
    assert isvc["spec"]["canary"][0]["trafficPercent"] == 0, "no traffic before the canary is ready"
    k8s.custom.get_namespaced_custom_object("serving.kserve.io", "v1alpha1", namespace, "servingruntimes", "ad-ctr-runtime")


def test_edits_reach_the_children_and_removed_tracks_go(control_plane, operator, namespace, k8s):
    obj = manifest(name="edit", namespace=None, runtime="triton", gateway={"name": "gw"},
                   autoscaling={"minReplicas": 1, "maxReplicas": 3})
    create(control_plane, namespace, obj)
    eventually(operator, lambda: get_mdep(k8s, namespace, "edit").get("status", {}).get("phase") == "Ready", "Ready")

    patch_spec(k8s, namespace, "edit", {"autoscaling": {"maxReplicas": 5}, "model": {"precision": "int8"}})
    eventually(operator, lambda: scaled_object(k8s, namespace, "edit-v1")["spec"]["maxReplicaCount"] == 5,
               "the ScaledObject to follow maxReplicas")
    puller = lambda: k8s.apps.read_namespaced_deployment("edit-v1", namespace).spec.template.spec.init_containers[0].args
    eventually(operator, lambda: "--source=/mnt/pvc/ad-click-prediction/1/triton/int8" in puller(), "the int8 variant")

    patch_spec(k8s, namespace, "edit", {"canary": canary("2", steps=[10, 50])})
    eventually(operator, lambda: weights(control_plane, namespace, "edit") == [("edit-v1", 90), ("edit-v2", 10)],
               "the canary's first step on the route")
    patch_spec(k8s, namespace, "edit", {"canary": {"steps": [30, 60]}})
    eventually(operator, lambda: weights(control_plane, namespace, "edit") == [("edit-v1", 70), ("edit-v2", 30)],
               "the edited step on the route")

    patch_spec(k8s, namespace, "edit", {"canary": None})      # merge patch: null removes the field
    eventually(operator, lambda: deployment_names(k8s, namespace) == ["edit-v1"], "the canary Deployment to go")
    eventually(operator, lambda: weights(control_plane, namespace, "edit") == [("edit-v1", 100)], "all traffic on stable")
    services = sorted(s.metadata.name for s in k8s.core.list_namespaced_service(namespace).items)
    assert services == ["edit", "edit-v1"]


def test_deleting_the_model_deployment_collects_every_child(control_plane, operator, namespace, k8s):
    create(control_plane, namespace, manifest(name="gone", namespace=None, runtime="triton", gateway={"name": "gw"}))
    eventually(operator, lambda: deployment_names(k8s, namespace) == ["gone-v1"], "the Deployment")
    eventually(operator, lambda: len(k8s.core.list_namespaced_service(namespace).items) == 2, "the Services")
    k8s.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")
    eventually(operator, lambda: not deployment_names(k8s, namespace)
               and not k8s.core.list_namespaced_service(namespace).items
               and not k8s.autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items,
               "garbage collection of every child", timeout=90)


def events_for(k8s, namespace: str, name: str) -> list[tuple[str, str]]:
    items = k8s.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [(e.reason, e.message) for e in items]


@pytest.mark.parametrize(("spec", "reason", "fragment"), [
    (dict(model={"storageUri": "file:///srv/models/ad/1"}), "InvalidSpec", "file:// is only readable by `mlsd serve`"),
    (dict(runtime="triton", canary=canary()), "InvalidSpec", "needs a Gateway"),
], ids=["file-uri", "triton-canary-without-gateway"])
def test_unrunnable_specs_fail_with_condition_and_event(control_plane, operator, namespace, k8s, spec, reason, fragment):
    create(control_plane, namespace, manifest(name="bad", namespace=None, **spec))
    status = eventually(operator, lambda: (s := get_mdep(k8s, namespace, "bad").get("status", {})).get("phase") == "Failed" and s,
                        "phase Failed")
    ready = condition({"status": status}, "Ready")
    assert ready["reason"] == reason and fragment in ready["message"]
    eventually(operator, lambda: any(r == reason and fragment in m for r, m in events_for(k8s, namespace, "bad")),
               "a warning Event")
    assert not deployment_names(k8s, namespace)
    # A fix is picked up without a restart.
    patch_spec(k8s, namespace, "bad", {"model": {"storageUri": "pvc://models/ad/1"}, "gateway": {"name": "gw"}})
    eventually(operator, lambda: get_mdep(k8s, namespace, "bad").get("status", {}).get("phase") != "Failed",
               "the fixed spec to leave Failed")


def test_objects_it_does_not_own_are_left_alone(control_plane, operator, namespace, k8s):
    foreign = client.V1Service(metadata=client.V1ObjectMeta(name="taken", labels={"team": "other"}),
                               spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=1234)]))
    k8s.core.create_namespaced_service(namespace, foreign)
    create(control_plane, namespace, manifest(name="taken", namespace=None, runtime="triton"))
    status = eventually(operator, lambda: (s := get_mdep(k8s, namespace, "taken").get("status", {})).get("phase") == "Failed" and s,
                        "phase Failed")
    assert condition({"status": status}, "Ready")["reason"] == "OwnershipConflict"
    service = k8s.core.read_namespaced_service("taken", namespace)
    assert service.metadata.labels == {"team": "other"} and service.spec.ports[0].port == 1234
    assert not service.metadata.owner_references


def test_status_is_written_only_when_it_changes(control_plane, operator, namespace, k8s):
    create(control_plane, namespace, manifest(name="quiet", namespace=None, runtime="triton"))
    eventually(operator, lambda: get_mdep(k8s, namespace, "quiet").get("status", {}).get("phase") == "Ready", "Ready")
    time.sleep(2)
    before = get_mdep(k8s, namespace, "quiet")["metadata"]["resourceVersion"]
    time.sleep(4)
    assert get_mdep(k8s, namespace, "quiet")["metadata"]["resourceVersion"] == before
    assert "mlsd_operator_reconciles_total" in operator.metrics()


def test_killed_operator_converges_after_restart(control_plane, operator, namespace, k8s):
    names = [f"crash-{i}" for i in range(6)]
    for name in names:
        create(control_plane, namespace, manifest(name=name, namespace=None, runtime="triton"))
    time.sleep(0.5)
    operator.kill()            # mid-reconcile: some children exist, some do not
    create(control_plane, namespace, manifest(name="while-down", namespace=None, runtime="triton"))
    operator.start()
    for name in [*names, "while-down"]:
        eventually(operator, lambda: get_mdep(k8s, namespace, name).get("status", {}).get("phase") == "Ready",
                   f"{name} to be Ready after the restart", timeout=90)
    assert deployment_names(k8s, namespace) == sorted(f"{n}-v1" for n in [*names, "while-down"])
    services = [s.metadata.name for s in k8s.core.list_namespaced_service(namespace).items]
    assert len(services) == len(set(services)) == 2 * (len(names) + 1)


def test_two_replicas_one_leads_the_standby_takes_over(control_plane, operator, namespace, k8s, tmp_path):
    standby = OperatorProcess(control_plane, tmp_path / "standby.log").start()
    try:
        eventually(standby, lambda: "standing by" in standby.log_tail(200), "the second replica to stand by")
        assert "mlsd_operator_leader 0.0" in standby.metrics(), "a standby serves /metrics too"
        operator.kill()
        eventually(standby, lambda: "became leader" in standby.log_tail(200), "the standby to take the lease")
        eventually(standby, lambda: "mlsd_operator_leader 1.0" in standby.metrics(), "the leader gauge")
        create(control_plane, namespace, manifest(name="after-failover", namespace=None, runtime="triton"))
        eventually(standby, lambda: get_mdep(k8s, namespace, "after-failover").get("status", {}).get("phase") == "Ready",
                   "the new leader to reconcile")
    finally:
        standby.stop()
        operator.start()       # the module's operator, for any test after this one


def test_missing_kserve_then_keda_are_reported_and_retried_until_installed(tmp_path):
    """A second, bare control plane (no KServe CRDs) so the shared one is not disturbed. The
    manifest scales on concurrency, which KServe's Standard mode does through KEDA: without KEDA's
    CRD KServe would fail the InferenceService, so the operator names KEDA and waits."""
    with ControlPlane(work_dir=tmp_path / "bare") as plane:
        install_crds(plane, kserve=False, gateway_api=False, keda=False)
        process = OperatorProcess(plane, tmp_path / "operator.log").start()
        try:
            plane.kubectl("create", "namespace", "ads")
            create(plane, "ads", manifest(name="ctr", namespace=None))
            custom = client.CustomObjectsApi(plane.api_client())
            get = lambda: custom.get_namespaced_custom_object(GROUP, VERSION, "ads", PLURAL, "ctr")
            ready = eventually(process, lambda: condition(get(), "Ready").get("reason") == "DependencyMissing"
                               and condition(get(), "Ready"), "DependencyMissing")
            assert "install KServe" in ready["message"]
            assert get()["status"]["phase"] == "Pending"
            install_crds(plane, kserve=True, gateway_api=False, keda=False)
            ready = eventually(process, lambda: "KEDA" in condition(get(), "Ready").get("message", "")
                               and condition(get(), "Ready"), "DependencyMissing naming KEDA")
            assert ready["reason"] == "DependencyMissing" and "scaledobjects.keda.sh" in ready["message"]
            assert get()["status"]["phase"] == "Pending"
            events = plane.kubectl("get", "events", "-n", "ads", "-o", "json").stdout
            assert "KEDA" in events, "no Event names the missing KEDA"
            install_crds(plane, kserve=True, gateway_api=False, keda=True)
            eventually(process, lambda: condition(get(), "Ready").get("reason") == "WaitingForKServe",
                       "the operator to proceed once KServe's CRDs exist")
        finally:
            process.stop()


def test_a_write_the_api_server_refuses_is_reported_and_retried(control_plane, operator, namespace, k8s):
    quota = client.V1ResourceQuota(metadata=client.V1ObjectMeta(name="one-service"),
                                   spec=client.V1ResourceQuotaSpec(hard={"services": "1"}))
    k8s.core.create_namespaced_resource_quota(namespace, quota)
    eventually(operator, lambda: k8s.core.read_namespaced_resource_quota("one-service", namespace).status.hard,
               "the quota to be counted")
    create(control_plane, namespace, manifest(name="quota", namespace=None, runtime="triton"))
    status = eventually(operator, lambda: (s := get_mdep(k8s, namespace, "quota").get("status", {}))
                        .get("phase") == "Degraded" and s, "phase Degraded")
    ready = condition({"status": status}, "Ready")
    assert ready["reason"] == "ApplyFailed" and "exceeded quota" in ready["message"]
    k8s.core.delete_namespaced_resource_quota("one-service", namespace)
    eventually(operator, lambda: get_mdep(k8s, namespace, "quota").get("status", {}).get("phase") == "Ready",
               "Ready once the quota is gone", timeout=90)
