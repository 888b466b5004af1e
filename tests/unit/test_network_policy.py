"""The optional predictor NetworkPolicy: rendered only when enabled, valid against the Kubernetes
1.34 schema, selecting every predictor pod of the ModelDeployment and admitting only the ingress
and Prometheus namespaces."""

from __future__ import annotations

import pytest

from mlsd_contract.api import GatewayRef, ModelDeployment
from mlsd_operator.builders import RenderConfig, build_children, build_network_policy
from mlsd_operator.controller._settings import OperatorSettings
from tests import schemas
from tests.conftest import SAMPLES, manifest

ON = RenderConfig(network_policy=True, network_policy_ingress_namespaces=("istio-system",),
                  gateway=GatewayRef(name="web", namespace="gateways"))


def mdep(**spec) -> ModelDeployment:
    return ModelDeployment.from_manifest(manifest(name="ad-ctr", uid="u-1", **spec))


def peers(policy) -> list[set[str]]:
    return [{p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in rule["from"]}
            for rule in policy["spec"]["ingress"]]


def test_off_by_default() -> None:
    assert not [c for c in build_children(mdep()) if c["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_renders_a_valid_policy_first(sample) -> None:
    from mlsd_operator import _yaml

    for doc in _yaml.load_all(sample):
        children = build_children(ModelDeployment.from_manifest(doc), ON)
        assert children[0]["kind"] == "NetworkPolicy"
        schemas.validate(children[0])


def test_triton_policy_selects_the_deployment_pods_and_admits_gateway_and_prometheus() -> None:
    policy = build_network_policy(mdep(runtime="triton"), ON)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"mlsd.io/model-deployment": "ad-ctr"}}
    assert peers(policy) == [{"gateways", "istio-system"}, {"monitoring"}]
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"


def test_kserve_policy_selects_the_inference_service_pods() -> None:
    policy = build_network_policy(mdep(runtime="kserve"), ON)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "ad-ctr"}}
    assert peers(policy) == [{"istio-system"}, {"monitoring"}]   # the Gateway is Triton's, not KServe's


def test_settings_from_env_reach_the_render_config(monkeypatch) -> None:
    monkeypatch.setenv("MLSD_NETWORK_POLICY", "true")
    monkeypatch.setenv("MLSD_NETWORK_POLICY_INGRESS_NAMESPACES", "istio-system, knative-serving")
    monkeypatch.setenv("MLSD_NETWORK_POLICY_PROMETHEUS_NAMESPACE", "obs")
    config = OperatorSettings.from_env().render_config()
    assert config.network_policy
    assert config.network_policy_ingress_namespaces == ("istio-system", "knative-serving")
    assert peers(build_network_policy(mdep(runtime="kserve"), config)) == [{"istio-system", "knative-serving"}, {"obs"}]
