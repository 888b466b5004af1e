"""The trainer image runs the retraining Job the operator renders and writes the next version.

The Job is the one `spec.retraining.job` renders (the ad-click sample's, with `--small` so the test
trains in seconds): uid 1000, capabilities dropped, its `models` claim writable (a host directory
standing in for the volume), the MLSD_* variables the operator sets and `$(VAR)` expanded in the
args as the kubelet does. The written repository is then read back here: a model card, the
KServe and Triton layouts, an ONNX graph onnxruntime loads.
"""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from mlsd_contract.api import ModelDeployment
from mlsd_operator.builders import RenderConfig, build_retraining_job

from tests._support import pods
from tests.conftest import manifest

pytestmark = pytest.mark.images
CASE = "ad-click-prediction"


def test_trainer_image_runs_the_rendered_retraining_job(built_images, tmp_path) -> None:
    mdep = ModelDeployment.model_validate(manifest(
        name=CASE, namespace="images", uid="00000000-0000-0000-0000-000000000002", caseStudy=CASE,
        drift={"window": "1h", "interval": "5m", "threshold": 0.2, "minSamples": 100},
        retraining={"cooldown": "1h", "job": {
            "image": built_images["trainer"],
            "args": ["build", CASE, "--small", "--version", "$(MLSD_NEXT_VERSION)", "--out", "$(MLSD_OUTPUT_DIR)"],
            "output": "pvc://models"}}))
    job = build_retraining_job(mdep, RenderConfig(), 1, {"features": [{"feature": "dense_0", "psi": 0.4}]})
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (claim,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    store = tmp_path / "models-pv"
    store.mkdir()
    store.chmod(0o777)                   # a PV the pod's fsGroup may write
    logs = pods.run_to_completion(built_images["trainer"], container, timeout=600, pod_security=pod["securityContext"],
                                  volumes=pod["volumes"], host_paths={claim["name"]: store})
    version = store / CASE / "2"            # the serving version is 1: the Job builds the next one
    card = json.loads((version / "model-card.json").read_text())
    assert card["version"] in (2, "2"), card.get("version")
    for layout in ("kserve/fp32", "kserve/int8", "triton/fp32"):
        assert (version / layout).is_dir(), f"{layout} missing; the Job said:\n{logs[-3000:]}"
    session = ort.InferenceSession(str(version / "kserve" / "fp32" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"sparse_ids", "dense"}
    owners = {p.stat().st_uid for p in version.rglob("*")}
    assert owners == {1000}, f"files written as uids {owners}, not the pod's runAsUser"
