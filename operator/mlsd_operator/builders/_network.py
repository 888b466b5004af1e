"""Optional NetworkPolicy per ModelDeployment (operator setting MLSD_NETWORK_POLICY, chart value
networkPolicy.enabled): the predictor pods accept connections only from the pods of the namespaces
that route to them (the Gateway's namespace, KServe's ingress/Knative namespaces: the
`network_policy_ingress_namespaces` setting) and from Prometheus' namespace (scrapes). Everything
else in the cluster, other tenants' pods included, is refused by the CNI.

Kubelet probes are not pod traffic and are not affected. A cluster whose CNI does not enforce
NetworkPolicy (kindnet before v0.24, flannel) accepts the object and enforces nothing."""

from __future__ import annotations

from typing import Any

from mlsd_contract.api import ModelDeployment

from ._common import dns_name, labels, metadata
from ._config import RenderConfig
from ._runtimes import RUNTIMES

NAMESPACE_LABEL = "kubernetes.io/metadata.name"   # set on every namespace by the API server (1.22+)


def predictor_pod_selector(mdep: ModelDeployment) -> dict[str, str]:
    """Every predictor pod of `mdep`, all tracks: KServe labels its pods with the InferenceService
    name (= the ModelDeployment's), the Triton Deployments carry ours."""
    return RUNTIMES[mdep.spec.runtime].pod_labels(mdep)


def ingress_namespaces(mdep: ModelDeployment, config: RenderConfig) -> list[str]:
    names = list(config.network_policy_ingress_namespaces)
    gateway = mdep.spec.gateway or config.gateway
    if RUNTIMES[mdep.spec.runtime].gateway_routed and gateway is not None:
        names.append(gateway.namespace or mdep.metadata.namespace or "")
    return sorted({n for n in names if n})


def build_network_policy(mdep: ModelDeployment, config: RenderConfig) -> dict[str, Any]:
    def from_namespace(name: str) -> dict[str, Any]:
        return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: name}}}

    routes = [from_namespace(n) for n in ingress_namespaces(mdep, config)]
    scrapes = [from_namespace(config.network_policy_prometheus_namespace)]
    rules = [{"from": routes}] if routes else []
    rules.append({"from": scrapes})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(mdep, dns_name(mdep.metadata.name, "predictors"),
                             labels(mdep, component="network-policy")),
        "spec": {
            "podSelector": {"matchLabels": predictor_pod_selector(mdep)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }
