"""The optional predictor NetworkPolicy on the real control plane, made by the real operator under
its own RBAC: created with the expected selector and ingress peers and owned by the
ModelDeployment; it selects exactly the predictor pods the controller-manager created (kwok runs
them); garbage-collected with its ModelDeployment; pruned once the operator runs with the policy
disabled. No CNI runs here, so enforcement itself is out of this tier (docs/reliability.md)."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlsd_operator import _yaml
from tests.conftest import manifest
from tests.integration.operator_harness import OperatorProcess, eventually, install_crds, model_store

GROUP, VERSION, PLURAL = "mlsd.io", "v1alpha1", "modeldeployments"
ENABLED = {"MLSD_NETWORK_POLICY": "true", "MLSD_NETWORK_POLICY_INGRESS_NAMESPACES": "istio-system,knative-serving",
           "MLSD_NETWORK_POLICY_PROMETHEUS_NAMESPACE": "monitoring"}


@pytest.fixture
def plane(control_plane, namespace):
    install_crds(control_plane)
    pv = model_store(control_plane, namespace)
    yield control_plane
    control_plane.kubectl("delete", "pv", pv, "--wait=false", check=False)


def policy(net: client.NetworkingV1Api, namespace: str, name: str) -> client.V1NetworkPolicy | None:
    try:
        return net.read_namespaced_network_policy(f"{name}-predictors", namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def peers(found: client.V1NetworkPolicy) -> list[set[str]]:
    return [{p.namespace_selector.match_labels["kubernetes.io/metadata.name"] for p in rule._from}
            for rule in found.spec.ingress]


def test_policy_created_owned_selecting_the_pods_then_collected_and_pruned(plane, namespace, api_client, tmp_path):
    net, core = client.NetworkingV1Api(api_client), client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    objects = [manifest(name="ads-triton", namespace=namespace, runtime="triton",
                        gateway={"name": "web", "namespace": "gateways"}),
               manifest(name="ads-kserve", namespace=namespace)]
    operator = OperatorProcess(plane, tmp_path / "operator.log", ENABLED).start()
    try:
        plane.kubectl("apply", "-f", "-", input=_yaml.dump_all(objects))
        uids = {o["metadata"]["name"]: custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, o["metadata"]["name"])["metadata"]["uid"] for o in objects}
        triton = eventually(operator, lambda: policy(net, namespace, "ads-triton"), "the Triton NetworkPolicy")
        kserve = eventually(operator, lambda: policy(net, namespace, "ads-kserve"), "the KServe NetworkPolicy")

        for found, name in ((triton, "ads-triton"), (kserve, "ads-kserve")):
            (owner,) = found.metadata.owner_references
            assert (owner.kind, owner.name, owner.uid, owner.controller) == ("ModelDeployment", name, uids[name], True)
            assert found.spec.policy_types == ["Ingress"]
        assert triton.spec.pod_selector.match_labels == {"mlsd.io/model-deployment": "ads-triton"}
        assert peers(triton) == [{"gateways", "istio-system", "knative-serving"}, {"monitoring"}]
        assert kserve.spec.pod_selector.match_labels == {"serving.kserve.io/inferenceservice": "ads-kserve"}
        assert peers(kserve) == [{"istio-system", "knative-serving"}, {"monitoring"}]

        # The selector fences exactly the predictor pods the Deployment made, and nothing else there.
        selector = ",".join(f"{k}={v}" for k, v in triton.spec.pod_selector.match_labels.items())
        fenced = eventually(operator, lambda: core.list_namespaced_pod(namespace, label_selector=selector).items,
                            "the Triton predictor pods")
        assert {p.metadata.labels["mlsd.io/version"] for p in fenced} == {"1"}
        assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in fenced)

        # Deleted with its ModelDeployment (the operator's finalizer, then the garbage collector).
        plane.kubectl("delete", PLURAL, "ads-triton", "-n", namespace, "--wait=false")
        eventually(operator, lambda: policy(net, namespace, "ads-triton") is None,
                   "the garbage collector to delete the orphaned NetworkPolicy", timeout=90)
    finally:
        operator.stop()

    # Disabled: the operator removes what it made, and leaves the workloads alone.
    operator = OperatorProcess(plane, tmp_path / "operator-disabled.log", {"MLSD_NETWORK_POLICY": "false"}).start()
    try:
        eventually(operator, lambda: policy(net, namespace, "ads-kserve") is None,
                   "the NetworkPolicy to be pruned once disabled")
        isvc = custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices",
                                                   "ads-kserve")
        assert isvc["metadata"]["ownerReferences"][0]["uid"] == uids["ads-kserve"]
    finally:
        operator.stop()
