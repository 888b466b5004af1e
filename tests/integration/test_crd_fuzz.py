"""Schema fuzz against the real API server: for every generated manifest (tests/fuzz_manifests.py),
`mlsd_contract.api.validate_manifest` and a server-side dry-run create of the generated CRD (strict
field validation, as kubectl sends it) agree on accept/reject, and whatever the server accepts and
stores (defaults applied) parses in Python too, since that is what the operator reads.

CI runs 150 examples (< 60 s); MLSD_FUZZ_EXAMPLES=5000 runs more. Nothing is mocked."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlsd_operator import _yaml
from mlsd_contract.api import GROUP, PLURAL, VERSION, crd, validate_manifest
from tests.fuzz_manifests import FUZZ_EXAMPLES, mutated_manifests


@pytest.fixture(scope="module")
def server(control_plane, api_client):
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=_yaml.dump(crd()))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.mlsd.io")
    namespace = f"crd-fuzz-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    yield client.CustomObjectsApi(api_client), namespace
    core.delete_namespace(namespace)


def server_verdict(custom: client.CustomObjectsApi, namespace: str, doc: Any) -> tuple[bool, Any]:
    """(accepted, the stored object or the server's message)."""
    try:
        stored = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc, dry_run="All",
                                                        field_validation="Strict", _request_timeout=10)
        return True, stored
    except ApiException as error:
        if error.status not in (400, 422):
            raise
        return False, json.loads(error.body).get("message") if error.body else error.reason


@settings(max_examples=FUZZ_EXAMPLES, deadline=datetime.timedelta(seconds=10), derandomize=FUZZ_EXAMPLES <= 150,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=mutated_manifests())
def test_python_and_api_server_agree_on_every_manifest(server, doc):
    custom, namespace = server
    model, problems = validate_manifest(doc)
    accepted, answer = server_verdict(custom, namespace, doc)
    assert (model is not None) == accepted, (
        f"disagreement: python {'accepts' if model else 'rejects: ' + '; '.join(map(str, problems))}, "
        f"server {'accepts' if accepted else 'rejects: ' + str(answer)}")
    if accepted:
        stored, stored_problems = validate_manifest(answer)
        assert stored is not None, f"the operator could not parse what the server stored: {stored_problems}"
