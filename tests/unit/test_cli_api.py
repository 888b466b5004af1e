"""`mlsd crd`, `mlsd validate` and `mlsd render`, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import yaml

from mlsd_operator import _yaml
from mlsd_contract.api import crd
from tests.conftest import REPO, SAMPLES, canary, manifest


def mlsd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlsd_operator", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_crd_prints_the_generated_crd():
    result = mlsd("crd")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == crd()


def test_validate_accepts_the_samples():
    result = mlsd("validate", *map(str, SAMPLES))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(": valid") == len(SAMPLES)


def test_validate_names_field_path_and_reason_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(_yaml.dump_all([
        manifest(name="inverted", autoscaling={"minReplicas": 4, "maxReplicas": 2}),
        manifest(name="ok"),
        manifest(name="steps", canary=canary(steps=[50, 20])),
    ]))
    result = mlsd("validate", str(bad))
    assert result.returncode == 1
    assert "bad.yaml[0] (inverted): spec.autoscaling: autoscaling.maxReplicas must be >= autoscaling.minReplicas" \
        in result.stderr
    assert "bad.yaml[1] (ok): valid" in result.stderr
    assert "bad.yaml[2] (steps): spec.canary: canary.steps must be strictly increasing" in result.stderr


def test_validate_warns_about_specs_a_cluster_cannot_run(tmp_path):
    local = tmp_path / "local.yaml"
    local.write_text(_yaml.dump(manifest(model={"storageUri": "file:///srv/models/ad/1"})))
    result = mlsd("validate", str(local))
    assert result.returncode == 0
    assert "the operator would report Failed" in result.stderr


def test_validate_reports_unreadable_yaml(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    result = mlsd("validate", str(broken))
    assert result.returncode == 1 and "cannot read" in result.stderr


def test_render_prints_every_child_of_every_sample():
    result = mlsd("render", *map(str, SAMPLES))
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert kinds.count("InferenceService") == 2 and kinds.count("ServingRuntime") == 2
    assert kinds.count("HTTPRoute") == 2
    assert {"Deployment", "Service", "ScaledObject"} <= set(kinds)   # the Triton samples scale on rps/concurrency


def test_render_reads_stdin_and_applies_canary_percent():
    result = mlsd("render", "--canary-percent", "40", "-",
                  stdin=_yaml.dump(manifest(runtime="triton", canary=canary(), gateway={"name": "gw"})))
    assert result.returncode == 0, result.stderr
    (route,) = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "HTTPRoute"]
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [60, 40]


def test_render_refuses_an_unrunnable_spec_with_the_reason():
    result = mlsd("render", "-", stdin=_yaml.dump(manifest(runtime="triton", canary=canary())))
    assert result.returncode == 1
    assert "needs a Gateway" in result.stderr
