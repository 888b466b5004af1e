"""Storage credentials never pass through the operator: on the real control plane, with the operator
running under its own RBAC (no verb on secrets) and at debug log level, a Secret's recognisable
value appears in none of the operator's log, the namespace's Events, the ModelDeployment (status
included) or any object derived from it (children, ReplicaSets, Pods). Only the Secret's name does,
where a pod needs it. Nothing is mocked; kwok stands in for kubelets, so no container ever reads
the Secret (the part the kubelet would do is out of this tier)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from kubernetes import client

from mlsd_operator import _yaml
from tests.conftest import manifest
from tests.integration.operator_harness import OperatorProcess, eventually, install_crds

GROUP, VERSION, PLURAL = "mlsd.io", "v1alpha1", "modeldeployments"
SECRET = "model-store-credentials"


class VerboseOperator(OperatorProcess):
    """Debug logging: kopf then logs every patch it sends and every handler outcome."""

    def argv(self) -> list[str]:
        return [*super().argv(), "--verbose"]


@pytest.fixture(scope="module")
def operator(control_plane, tmp_path_factory):
    install_crds(control_plane)
    process = VerboseOperator(control_plane, tmp_path_factory.mktemp("secrets-operator") / "operator.log").start()
    yield process
    process.stop()


def forms(value: str) -> list[str]:
    """The value as text and as the API server stores it in `data` (base64)."""
    return [value, base64.b64encode(value.encode()).decode()]


def everything_in(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """Every object of the namespace a leak could reach, except the Secret itself."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    listers = {
        "events": core.list_namespaced_event,
        "events.k8s.io": client.EventsV1Api(api).list_namespaced_event,
        "pods": core.list_namespaced_pod,
        "serviceaccounts": core.list_namespaced_service_account,
        "services": core.list_namespaced_service,
        "configmaps": core.list_namespaced_config_map,
        "deployments": apps.list_namespaced_deployment,
        "replicasets": apps.list_namespaced_replica_set,
        "hpas": client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler,
    }
    # Raw JSON, as served: a typed model would drop fields it does not know.
    out = {k: json.loads(list_(namespace, _preload_content=False).data) for k, list_ in listers.items()}
    custom = client.CustomObjectsApi(api)
    for group, version, plural in [(GROUP, VERSION, PLURAL),
                                   ("serving.kserve.io", "v1beta1", "inferenceservices"),
                                   ("serving.kserve.io", "v1alpha1", "servingruntimes"),
                                   ("keda.sh", "v1alpha1", "scaledobjects")]:
        out[plural] = custom.list_namespaced_custom_object(group, version, namespace, plural)
    return out


def test_secret_values_reach_no_log_event_status_or_child(control_plane, operator, api_client, namespace):
    value = f"leak-marker-{uuid.uuid4().hex}"
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET, annotations={"serving.kserve.io/s3-endpoint": "minio.store:9000"}),
        string_data={"AWS_ACCESS_KEY_ID": "mlsd-reader", "AWS_SECRET_ACCESS_KEY": value,
                     "gcloud-application-credentials.json": json.dumps({"private_key": value})}))
    objects = [
        manifest(name="kserve-s3", namespace=namespace,
                 model={"storageUri": "s3://models/ad/1", "storageSecretName": SECRET}),
        manifest(name="triton-s3", namespace=namespace, runtime="triton",
                 model={"storageUri": "s3://models/ad/1", "storageSecretName": SECRET}),
        manifest(name="triton-gcs", namespace=namespace, runtime="triton",
                 model={"storageUri": "gs://models/ad/1", "storageSecretName": SECRET}),
    ]
    control_plane.kubectl("apply", "-f", "-", input=_yaml.dump_all(objects))
    apps = client.AppsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)

    def reconciled() -> bool:
        return all((custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, o["metadata"]["name"])
                    .get("status") or {}).get("observedGeneration") == 1 for o in objects)

    eventually(operator, reconciled, "every ModelDeployment reconciled")
    # Pods exist (controller-manager + kwok): a leak through the pod template would be visible.
    eventually(operator, lambda: len(core.list_namespaced_pod(namespace).items) >= 2, "the Triton pods")

    # The references are there, by name: the test looks where a value would have to be.
    for name in ("triton-s3-v1", "triton-gcs-v1"):
        puller = apps.read_namespaced_deployment(name, namespace).spec.template.spec.init_containers[0]
        assert puller.env_from[0].secret_ref.name == SECRET
    isvc = custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices",
                                               "kserve-s3")
    account = core.read_namespaced_service_account(isvc["spec"]["predictor"]["serviceAccountName"], namespace)
    assert [s.name for s in account.secrets] == [SECRET]
    assert account.metadata.owner_references[0].name == "kserve-s3"

    dumped = json.dumps(everything_in(api_client, namespace))
    log = operator.log_path.read_text(errors="replace")
    assert SECRET in log and SECRET in dumped     # both were looked at where a value would land: bodies in full
    for text in forms(value):
        assert text not in log, "the secret value is in the operator's log"
        assert text not in dumped, "the secret value is in an object of the namespace"
    assert SECRET in dumped

    # The operator could not have read it: its ServiceAccount has no verb on secrets.
    for verb in ("get", "list", "watch"):
        answer = control_plane.kubectl("auth", "can-i", verb, "secrets", "-n", namespace,
                                       "--as=system:serviceaccount:mlsd-system:mlsd-operator", check=False)
        assert answer.stdout.strip() == "no", (verb, answer.stdout)
