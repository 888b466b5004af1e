"""The generated CRD in a real kube-apiserver: it installs, defaults, prints, and rejects every
invalid object that `mlsd validate` rejects (the CEL rules with the very same message)."""

from __future__ import annotations

import pytest

from mlsd_operator import _yaml
from mlsd_contract.api import crd
from mlsd_devcluster import KubectlError
from tests.conftest import SAMPLES, manifest
from tests.unit.test_api_rules import INVALID



def _rule_messages() -> set[str]:
    from mlsd_contract.api import _types
    return {rule.message for name in dir(_types) for rule in getattr(getattr(_types, name), "rules", ())
            if isinstance(getattr(_types, name), type)}


@pytest.fixture(scope="module")
def installed(control_plane):
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=_yaml.dump(crd()))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.mlsd.io")
    return control_plane


def apply(plane, namespace: str, obj) -> str:
    obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "namespace"}}
    return plane.kubectl("apply", "-n", namespace, "-f", "-", input=_yaml.dump(obj)).stdout


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_is_accepted(installed, namespace, sample):
    installed.kubectl("apply", "-n", namespace, "-f", str(sample))


@pytest.mark.parametrize(("obj", "path", "reason"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_objects_are_rejected_by_the_api_server(installed, namespace, obj, path, reason):
    with pytest.raises(KubectlError) as rejected:
        apply(installed, namespace, obj)
    message = rejected.value.stderr
    if reason in _rule_messages() or any(reason in m for m in _rule_messages()):
        assert reason in message, message                  # CEL: the same words as `mlsd validate`
    else:
        assert path.rsplit(".", 1)[-1].split("[")[0] in message, message   # schema: names the field


def test_defaults_are_applied_by_the_api_server(installed, namespace):
    apply(installed, namespace, manifest(name="defaults", namespace=None,
                                         canary={"model": {"version": "2", "storageUri": "pvc://m/2"}}))
    obj = _yaml.load_all_text(installed.kubectl("get", "mdep", "defaults", "-n", namespace, "-o", "yaml").stdout)[0]
    spec = obj["spec"]
    assert spec["autoscaling"] == {"minReplicas": 1, "maxReplicas": 1, "metric": "concurrency", "target": 8}
    assert spec["placement"] == {"accelerator": "cpu"} and spec["kserve"] == {"deploymentMode": "Standard"}
    assert spec["canary"]["steps"] == [10, 25, 50] and spec["canary"]["interval"] == "60s"
    assert spec["canary"]["analysis"]["failureLimit"] == 2


def test_kubectl_get_shows_the_printer_columns(installed, namespace):
    apply(installed, namespace, manifest(name="printed", namespace=None))
    installed.kubectl("patch", "mdep", "printed", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                      '{"status": {"phase": "Progressing", "stable": {"version": "1"}, '
                      '"canary": {"version": "2", "trafficPercent": 25}}}')
    header, row = installed.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()[:2]
    assert header.split() == ["NAME", "CASE", "RUNTIME", "STABLE", "CANARY", "TRAFFIC", "PHASE", "AGE"]
    assert row.split()[:7] == ["printed", "ad-click-prediction", "kserve", "1", "2", "25", "Progressing"]


def test_scale_subresource_sets_min_replicas(installed, namespace):
    apply(installed, namespace, manifest(name="scaled", namespace=None, autoscaling={"maxReplicas": 5}))
    installed.kubectl("scale", "mdep", "scaled", "-n", namespace, "--replicas=3")
    obj = _yaml.load_all_text(installed.kubectl("get", "mdep", "scaled", "-n", namespace, "-o", "yaml").stdout)[0]
    assert obj["spec"]["autoscaling"]["minReplicas"] == 3
    with pytest.raises(KubectlError, match="maxReplicas must be >= autoscaling.minReplicas"):
        installed.kubectl("scale", "mdep", "scaled", "-n", namespace, "--replicas=6")
