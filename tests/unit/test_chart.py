"""The Helm chart, rendered by a real Helm (hack/helm.sh builds the pinned one): it lints, every
rendered object is valid for Kubernetes 1.34, its generated parts equal their sources, its RBAC is
exactly manifests/rbac, bad values are refused with the key's path, and `kubectl apply -k
manifests/` installs the same objects as the chart's defaults.

These need the `helm` binary, and the kustomize test needs the control plane's `kubectl`; both FAIL
(never skip) with the command that builds them."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsd_operator import _yaml
from mlsd_contract.api import crd, validate_manifest
from mlsd_devcluster._binaries import MissingBinariesError, cache_root, find_binaries
from tests.conftest import REPO, SAMPLES
from tests.schemas import KUBERNETES_VERSION, validate

CHART = REPO / "charts" / "mlsd-operator"
HELM_SCRIPT = REPO / "hack" / "helm.sh"
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version",
                    "app.kubernetes.io/instance"}
CASE_STUDIES = sorted(path.stem for path in SAMPLES)

# The values matrix the issue asks for: namespaced/cluster-wide x ServiceMonitor x samples.
MATRIX = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "samples": {"samples": {"enabled": True, "namespace": "team-a"}},
    "everything": {
        "watchNamespaces": ["team-a"], "logLevel": "debug", "gateway": "gateway-system/mlsd-gateway",
        "metrics": {"serviceMonitor": {"enabled": True}}, "samples": {"enabled": True, "namespace": "team-a"},
        "image": {"digest": "sha256:" + "a" * 64}, "replicaCount": 3,
        "extraEnv": [{"name": "EXTRA", "value": "1"}], "podLabels": {"team": "ml"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "imagePullSecrets": [{"name": "regcred"}], "priorityClassName": "system-cluster-critical",
    },
    "no-metrics-service": {"metrics": {"service": {"enabled": False}}, "rbac": {"create": True},
                           "serviceAccount": {"create": True, "name": "custom-sa"}},
}


def helm_version() -> str:
    match = re.search(r"^HELM_VERSION=(\S+)$", HELM_SCRIPT.read_text(), re.M)
    assert match, "HELM_VERSION not found in hack/helm.sh"
    return match.group(1)


def helm_binary() -> Path:
    """$MLSD_HELM, else where `hack/helm.sh build` puts the pinned helm."""
    if explicit := os.environ.get("MLSD_HELM"):
        path = Path(explicit)
    else:
        path = cache_root() / "helm" / helm_version() / "helm"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"helm not found at {path}: run `hack/helm.sh build` (builds Helm {helm_version()} "
                    "from the Go module proxy; hack/test.sh does it) or set MLSD_HELM", pytrace=False)
    return path


def helm(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    home = Path(os.environ.get("MLSD_HELM_HOME", "/tmp/mlsd-helm-home"))
    # Helm keeps repositories and caches under $HOME; a private home keeps tests out of the user's.
    helm_env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
                "HELM_DATA_HOME": str(home / "data"), **(env or {})}
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, env=helm_env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def values_file(values: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


MONITORING_APIS = ("monitoring.coreos.com/v1/PodMonitor", "monitoring.coreos.com/v1/ServiceMonitor",
                   "monitoring.coreos.com/v1/PrometheusRule")


def render(values: dict[str, Any], tmp_path: Path, *, release: str = "mlsd-operator",
           namespace: str = "mlsd-system", crds: bool = True, api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`helm template`; `api_versions`: kinds the pretend cluster serves (Helm's .Capabilities)."""
    args = ["template", release, str(CHART), "-n", namespace, "--kube-version", f"{KUBERNETES_VERSION}.0",
            "-f", str(values_file(values, tmp_path)), *(f"--api-versions={a}" for a in api_versions)]
    if crds:
        args.append("--include-crds")
    return _yaml.load_all_text(helm(*args).stdout)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (operator,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


def manifests_rbac() -> list[dict[str, Any]]:
    return [doc for path in sorted((REPO / "manifests" / "rbac").glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in _yaml.load_all(path)]


# --- lint and render ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", MATRIX)
def test_chart_lints(case, tmp_path):
    result = helm("lint", str(CHART), "--strict", "--kube-version", f"{KUBERNETES_VERSION}.0",
                  "-f", str(values_file(MATRIX[case], tmp_path)))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("case", MATRIX)
def test_every_rendered_object_is_valid_for_kubernetes(case, tmp_path):
    docs = render(MATRIX[case], tmp_path)
    assert docs, "nothing rendered"
    for doc in docs:
        what = f"{doc['kind']} {doc['metadata'].get('name')}"
        if doc["kind"] == "ModelDeployment":
            _, problems = validate_manifest(doc)
            assert not problems, f"{what}: {problems}"
        elif doc["kind"] == "ServiceMonitor":
            check_service_monitor(doc, docs)
        else:
            try:
                validate(doc)     # kubernetes-validate, strict: an unknown field is an error
            except Exception as error:    # noqa: BLE001 (either library's error, with its path)
                pytest.fail(f"{case}: {what} is invalid for Kubernetes {KUBERNETES_VERSION}: {error}")
        if doc["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"].get("namespace"), f"{what} has no namespace"


def check_service_monitor(monitor: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """No ServiceMonitor schema ships here; check what makes it scrape: it selects our Service by
    labels, in its namespace, on the port name that Service has."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_rendered_crd_is_the_generated_one(tmp_path):
    crds = by_kind(render({}, tmp_path), "CustomResourceDefinition")
    committed = _yaml.load_all(REPO / "manifests" / "crds" / "mlsd.io_modeldeployments.yaml")
    stale = "charts/mlsd-operator/crds is stale: run hack/update-chart.sh"
    assert crds == committed, stale
    assert crds == [crd()], stale


def test_chart_samples_are_copies_of_manifests_samples():
    copies = {p.name: p.read_text() for p in (CHART / "files" / "samples").glob("*.yaml")}
    sources = {p.name: p.read_text() for p in SAMPLES}
    assert copies == sources, "charts/mlsd-operator/files/samples is stale: run hack/update-chart.sh"


def test_no_crd_template_and_crds_not_templated(tmp_path):
    """Helm installs crds/ first and never deletes or upgrades it; a CRD among the templates would be
    deleted by `helm uninstall`, taking every ModelDeployment in the cluster with it."""
    assert not by_kind(render({}, tmp_path, crds=False), "CustomResourceDefinition")


# --- RBAC ---------------------------------------------------------------------------------------

def rules(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    return [r for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix) for r in d["rules"]]


@pytest.mark.parametrize("case", ["defaults", "namespaced"])
def test_rbac_rules_are_exactly_manifests_rbac(case, tmp_path):
    docs = render(MATRIX[case], tmp_path)
    source = manifests_rbac()
    assert one(docs, "ClusterRole", "mlsd-operator")["rules"] == one(source, "ClusterRole")["rules"]
    assert one(docs, "Role")["rules"] == one(source, "Role")["rules"]
    assert one(docs, "Role")["metadata"]["namespace"] == "mlsd-system"
    service_account = one(docs, "ServiceAccount")["metadata"]
    for binding in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account["name"],
                                        "namespace": service_account["namespace"]}]


def test_cluster_wide_binds_the_cluster_role_once(tmp_path):
    docs = render({}, tmp_path)
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "mlsd-operator"
    assert [b["roleRef"]["name"] for b in by_kind(docs, "RoleBinding")] == ["mlsd-operator-leader-election"]


def test_namespaced_grants_the_cluster_role_per_namespace_and_little_cluster_wide(tmp_path):
    docs = render(MATRIX["namespaced"], tmp_path)
    grants = {(b["metadata"]["namespace"], b["roleRef"]["kind"], b["roleRef"]["name"]) for b in by_kind(docs, "RoleBinding")}
    assert grants == {("team-a", "ClusterRole", "mlsd-operator"), ("team-b", "ClusterRole", "mlsd-operator"),
                      ("mlsd-system", "Role", "mlsd-operator-leader-election")}
    (cluster_binding,) = by_kind(docs, "ClusterRoleBinding")
    watch = one(docs, "ClusterRole", cluster_binding["roleRef"]["name"])
    crds, namespaces = watch["rules"]
    assert crds in one(manifests_rbac(), "ClusterRole")["rules"]
    # kopf follows its namespace list by watching namespaces (tests/integration/test_chart.py
    # checks the operator logs no Forbidden in this mode).
    assert namespaces == {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
    assert container(docs)["args"][-2:] == ["--namespace=team-a", "--namespace=team-b"]


def test_rbac_off_renders_no_rbac(tmp_path):
    docs = render({"rbac": {"create": False}}, tmp_path)
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io")]


# --- the operator Deployment ----------------------------------------------------------------------

def test_deployment_is_hardened_and_probed(tmp_path):
    docs = render({}, tmp_path)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(docs)
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                           "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert set(operator["resources"]) == {"requests", "limits"}
    assert all(set(operator["resources"][k]) == {"cpu", "memory"} for k in ("requests", "limits"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert operator["command"] == ["mlsd", "operator"]
    assert operator["args"] == ["--health-port=8080", "--metrics-port=9090"]
    assert operator["image"] == "ghcr.io/mlsd-serving/operator:0.1.0"
    assert pod["serviceAccountName"] == "mlsd-operator"
    # Replicas spread over nodes by default.
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_leader_election_identity_comes_from_the_downward_api(tmp_path):
    env = env_of(render({}, tmp_path))
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_values_reach_the_operator(tmp_path):
    docs = render({
        "predictorImage": "reg.example/predictor:9", "tritonImage": "reg.example/triton:9",
        "prometheusUrl": "http://prom.example:9090", "gateway": "gw-ns/gw",
        "gpuTolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}],
        "resyncSeconds": 60, "dependencyRetrySeconds": 5, "leaseSeconds": 9, "logLevel": "debug",
        "healthPort": 8181, "metrics": {"port": 9191}, "image": {"tag": "dev", "pullPolicy": "Never"},
        "extraEnv": [{"name": "EXTRA", "value": "yes"}],
    }, tmp_path)
    env = env_of(docs)
    assert env["MLSD_PREDICTOR_IMAGE"] == "reg.example/predictor:9"
    assert env["MLSD_TRITON_IMAGE"] == "reg.example/triton:9"
    assert env["MLSD_PROMETHEUS_URL"] == "http://prom.example:9090"
    assert env["MLSD_GATEWAY"] == "gw-ns/gw"
    assert json.loads(env["MLSD_GPU_TOLERATIONS"]) == [{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]
    assert (env["MLSD_RESYNC_SECONDS"], env["MLSD_DEPENDENCY_RETRY_SECONDS"], env["MLSD_LEASE_SECONDS"]) == ("60", "5", "9")
    assert env["EXTRA"] == "yes"
    operator = container(docs)
    assert operator["args"] == ["--health-port=8181", "--metrics-port=9191", "--verbose"]
    assert (operator["image"], operator["imagePullPolicy"]) == ("ghcr.io/mlsd-serving/operator:dev", "Never")
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9191


def test_no_gateway_value_sets_no_gateway_env(tmp_path):
    assert "MLSD_GATEWAY" not in env_of(render({}, tmp_path))


def test_digest_wins_over_tag(tmp_path):
    digest = "sha256:" + "b" * 64
    docs = render({"image": {"tag": "ignored", "digest": digest}}, tmp_path)
    assert container(docs)["image"] == f"ghcr.io/mlsd-serving/operator@{digest}"


def test_release_name_prefixes_every_name(tmp_path):
    docs = render({}, tmp_path, release="blue", namespace="ops")
    names = {d["metadata"]["name"] for d in docs if d["kind"] != "CustomResourceDefinition"}
    assert names == {"blue-mlsd-operator", "blue-mlsd-operator-metrics", "blue-mlsd-operator-leader-election",
                     "blue-mlsd-operator-dashboard"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] in ("Deployment", "Role", "ServiceAccount")} == {"ops"}


# --- ServiceMonitor and samples ----------------------------------------------------------------

def test_service_monitor_only_when_enabled(tmp_path):
    assert not by_kind(render({}, tmp_path), "ServiceMonitor")
    docs = render(MATRIX["service-monitor"], tmp_path)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    check_service_monitor(monitor, docs)


def test_service_monitor_without_service_is_refused(tmp_path):
    result = helm("template", "x", str(CHART), "-f", str(values_file(
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, tmp_path)), check=False)
    assert result.returncode != 0 and "needs metrics.service.enabled" in result.stderr


def test_samples_off_by_default_and_namespaced_when_on(tmp_path):
    assert not by_kind(render({}, tmp_path), "ModelDeployment")
    docs = render({"samples": {"enabled": True, "namespace": "demo", "include": ["visual-search", "ad-click-prediction"]}}, tmp_path)
    samples = by_kind(docs, "ModelDeployment")
    assert sorted(s["metadata"]["name"] for s in samples) == ["ad-ctr", "visual-search"]
    for sample in samples:
        assert sample["metadata"]["namespace"] == "demo"
        assert sample["metadata"]["labels"]["app.kubernetes.io/instance"] == "mlsd-operator"
        source = next(d for p in SAMPLES for d in _yaml.load_all(p) if d["metadata"]["name"] == sample["metadata"]["name"])
        assert sample["spec"] == source["spec"], "the sample's spec must reach the cluster unchanged"


def test_samples_come_with_a_pre_delete_hook_that_may_only_delete_them(tmp_path):
    """The operator's finalizer is on every sample; the hook deletes them while it still runs."""
    assert not [d for d in render({}, tmp_path) if "samples-cleanup" in d["metadata"]["name"]]
    docs = render({"samples": {"enabled": True, "namespace": "demo"}}, tmp_path)
    hooks = [d for d in docs if "samples-cleanup" in d["metadata"]["name"]]
    assert sorted(d["kind"] for d in hooks) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    for hook in hooks:
        assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert one(hooks, "Role")["metadata"]["namespace"] == "demo"
    assert one(hooks, "Role")["rules"] == [{"apiGroups": ["mlsd.io"], "resources": ["modeldeployments"],
                                            "verbs": ["list", "delete"]}]
    (cleanup,) = one(hooks, "Job")["spec"]["template"]["spec"]["containers"]
    assert cleanup["args"] == ["demo", "app.kubernetes.io/instance=mlsd-operator"]
    assert cleanup["image"] == container(docs)["image"]
    assert cleanup["securityContext"]["readOnlyRootFilesystem"] is True


def test_an_unknown_sample_is_refused_by_name(tmp_path):
    values = values_file({"samples": {"enabled": True, "include": ["fraud-detection"]}}, tmp_path)
    result = helm("template", "mlsd-operator", str(CHART), "-f", str(values), check=False)
    assert result.returncode != 0
    assert 'samples.include: no sample "fraud-detection" in files/samples' in result.stderr


def test_all_samples_by_default_when_enabled(tmp_path):
    docs = render({"samples": {"enabled": True}}, tmp_path)
    assert len(by_kind(docs, "ModelDeployment")) == len(CASE_STUDIES)
    assert {d["metadata"]["namespace"] for d in by_kind(docs, "ModelDeployment")} == {"mlsd-system"}


# --- values and their schema -------------------------------------------------------------------

BAD_VALUES = {
    "negative replicas": ({"replicaCount": -1}, "/replicaCount", "minimum"),
    "replicas as text": ({"replicaCount": "two"}, "/replicaCount", "want integer"),
    "namespaces as a string": ({"watchNamespaces": "team-a"}, "/watchNamespaces", "want array"),
    "bad namespace name": ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0", "does not match pattern"),
    "unknown log level": ({"logLevel": "loud"}, "/logLevel", "info"),
    "bad pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "IfNotPresent"),
    "typo in a key": ({"replicas": 2}, "replicas", "additional properties"),
    "sample name with a path": ({"samples": {"include": ["../secrets"]}}, "/samples/include/0", "does not match pattern"),
    "bad quantity": ({"resources": {"limits": {"cpu": "lots"}}}, "/resources/limits/cpu", "does not match pattern"),
    "gateway without namespace": ({"gateway": "mlsd-gateway"}, "/gateway", "does not match pattern"),
    "port out of range": ({"metrics": {"port": 70000}}, "/metrics/port", "maximum"),
    "flag as text": ({"monitoring": {"dashboard": {"enabled": "yes"}}}, "/monitoring/dashboard/enabled", "want boolean"),
    "auto flag misspelt": ({"metrics": {"serviceMonitor": {"enabled": "automatic"}}}, "/metrics/serviceMonitor/enabled",
                           "one of true, false, 'auto'"),
    "lease too short": ({"leaseSeconds": 1}, "/leaseSeconds", "minimum"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_are_refused_with_the_key_path(case, tmp_path):
    values, path, words = BAD_VALUES[case]
    result = helm("template", "mlsd-operator", str(CHART), "-f", str(values_file(values, tmp_path)), check=False)
    assert result.returncode != 0, f"{case}: accepted"
    message = result.stderr
    assert "values don't meet the specifications of the schema" in message, message
    assert path in message and words in message, f"{case}: unreadable message:\n{message}"


def _schema_paths(schema: dict[str, Any], definitions: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, prop in schema.get("properties", {}).items():
        if "$ref" in prop:
            prop = definitions[prop["$ref"].rsplit("/", 1)[-1]]
        paths.append(prefix + key)
        if prop.get("type") == "object" and "properties" in prop:
            paths += _schema_paths(prop, definitions, prefix + key + ".")
    return paths


def _commented_keys(text: str) -> dict[str, bool]:
    """Every mapping key of values.yaml by dotted path (list items excluded) -> has a comment above."""
    out, stack, previous = {}, [], ""
    for line in text.splitlines():
        if not line.strip():
            continue
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if match and not line.lstrip().startswith("- "):
            indent = len(match.group(1))
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, match.group(2))]
            out[".".join(k for _, k in stack)] = previous.lstrip().startswith("#")
        previous = line
    return out


def test_every_value_is_commented_and_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    declared = set(_schema_paths(schema, schema["definitions"])) - {"global"}
    keys = _commented_keys((CHART / "values.yaml").read_text())
    documented = {k for k in keys if k in declared}
    assert declared == documented, f"in the schema but not in values.yaml: {sorted(declared - documented)}"
    uncommented = sorted(k for k in documented if not keys[k])
    assert not uncommented, f"values.yaml keys without a comment above: {uncommented}"
    # The other way round (a key the schema does not declare) is refused by additionalProperties:
    # false, which test_chart_lints exercises on the default values.


def test_default_values_match_the_operator_defaults():
    """The chart's defaults are the operator's own, so installing by chart or by `mlsd operator`
    behaves the same."""
    from mlsd_operator.builders import RenderConfig
    from mlsd_operator.controller._settings import OperatorSettings

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    settings, render_config = OperatorSettings(), RenderConfig()
    assert values["predictorImage"] == settings.predictor_image
    assert values["tritonImage"] == settings.triton_image
    assert values["prometheusUrl"] == settings.prometheus_url
    assert values["gpuTolerations"] == [t.model_dump(exclude_none=True) for t in render_config.gpu_tolerations]
    assert (values["healthPort"], values["metrics"]["port"]) == (settings.health_port, settings.metrics_port)


# --- kustomize base ------------------------------------------------------------------------------

def _without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    labels = doc["metadata"].get("labels", {})
    for key in HELM_ONLY_LABELS:
        labels.pop(key, None)
    return doc


def test_kustomize_base_installs_what_the_chart_defaults_install(tmp_path):
    try:
        kubectl = find_binaries(["kubectl"])["kubectl"]
    except MissingBinariesError as error:
        pytest.fail(f"{error} (kubectl builds kustomize manifests/)", pytrace=False)
    built = _yaml.load_all_text(subprocess.run([str(kubectl), "kustomize", str(REPO / "manifests")],
                                               capture_output=True, text=True, check=True).stdout)
    namespaces = by_kind(built, "Namespace")
    assert [n["metadata"]["name"] for n in namespaces] == ["mlsd-system"]
    kustomized = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
                  for d in built if d["kind"] != "Namespace"}
    charted = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): _without_helm_labels(d)
               for d in render({}, tmp_path)}
    assert sorted(kustomized) == sorted(charted)
    for key, doc in kustomized.items():
        assert doc == charted[key], f"{key} differs between manifests/ and the chart's defaults"


# -- the observability kit ---------------------------------------------------------------------------

MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize(("setting", "served", "expected"), [
    ("auto", True, MONITORING_KINDS), ("auto", False, set()),
    (True, False, MONITORING_KINDS), (False, True, set()),
])
def test_monitoring_objects_follow_the_cluster_unless_told(setting, served, expected, tmp_path):
    values = {"metrics": {"serviceMonitor": {"enabled": setting}},
              "monitoring": {"podMonitor": {"enabled": setting}, "prometheusRule": {"enabled": setting}}}
    docs = render(values, tmp_path, crds=False, api_versions=MONITORING_APIS if served else ())
    assert {d["kind"] for d in docs} & MONITORING_KINDS == expected


def test_monitoring_objects_match_prometheus_operators_schemas(tmp_path):
    docs = render({"watchNamespaces": ["team-a"]}, tmp_path, crds=False, api_versions=MONITORING_APIS)
    for kind in sorted(MONITORING_KINDS):
        (obj,) = by_kind(docs, kind)
        validate(obj)       # prometheus-operator v0.90.1's CRD schema, strict
    (pod_monitor,) = by_kind(docs, "PodMonitor")
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} == {"http1", "metrics"}
    (service_monitor,) = by_kind(docs, "ServiceMonitor")
    assert service_monitor["spec"]["endpoints"][0]["honorLabels"] is True
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"MLSDRolloutStuck", "MLSDCanaryFailingAnalysis", "MLSDModelDrifted", "MLSDPredictorErrorRate"}


def test_dashboard_configmap_carries_the_dashboard(tmp_path):
    docs = render({}, tmp_path, crds=False)
    (config_map,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["mlsd-serving.json"])
    assert dashboard["uid"] == "mlsd-serving-modeldeployment"
    assert all(panel["targets"] and all(t["expr"] for t in panel["targets"]) for panel in dashboard["panels"])
    assert not [d for d in by_kind(render({"monitoring": {"dashboard": {"enabled": False}}}, tmp_path, crds=False),
                                    "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
