"""The predictor and Triton images serve every case study as the operator renders their pods.

KServe: the ServingRuntime's container (uid 1000 from the image, read-only root, only its /tmp
emptyDir writable) with the model's variant mounted read-only at /mnt/models, as KServe mounts a
pvc:// storageUri, and the InferenceService's env. Triton: the Deployment's pod, both containers:
the model puller (predictor image) fills the shared `models` emptyDir from the claim, then
tritonserver (Triton image) serves it read-only, each with the pod's securityContext (uid 1000).
An independent client (tritonclient) gets the answers in-process onnxruntime gives, and a 4xx
naming the reason for a bad tensor.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from mlsd_contract.api import ModelDeployment
from mlsd_operator.builders import RenderConfig, build_children

from tests.conftest import manifest
from tests.serving._reference import CASES, TRITON_OUTPUTS, client, infer_inputs, inputs, reference

from tests._support import pods

pytestmark = pytest.mark.images


def _children(case: str, runtime: str, precision: str, refs: dict[str, str]) -> list[dict[str, Any]]:
    mdep = ModelDeployment.model_validate(manifest(
        name=case, namespace="images", uid="00000000-0000-0000-0000-000000000001", caseStudy=case,
        runtime=runtime, model={"version": "1", "storageUri": f"pvc://models/{case}/1", "precision": precision},
        placement={"accelerator": "cpu"}))
    config = RenderConfig(predictor_image=refs["predictor"], triton_image=refs["tritonserver"])
    return build_children(mdep, config)


def _kind(children: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(c for c in children if c["kind"] == kind)


def _assert_answers(url: str, case: str, variant: Path, outputs: tuple[str, ...], model: str) -> None:
    for rows, seed in ((1, 1), (4, 2)):
        feeds = inputs(case, rows, seed)
        want = reference(case, variant, feeds)
        result = client(httpclient, url).infer(model, infer_inputs(httpclient, feeds))
        for name in outputs:
            got = result.as_numpy(name)
            assert got.shape == want[name].shape, f"{name}: {got.shape} != {want[name].shape}"
            if np.issubdtype(want[name].dtype, np.floating):
                np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5, err_msg=name)
            else:
                np.testing.assert_array_equal(got, want[name], err_msg=name)


def _assert_bad_tensor_refused(url: str, case: str, model: str) -> str:
    feeds = inputs(case, 1, 3)
    name = next(n for n, a in feeds.items() if a.ndim > 1 and a.shape[1] > 1)   # a feature too few
    feeds[name] = feeds[name][:, :-1]
    with pytest.raises(InferenceServerException) as caught:
        client(httpclient, url).infer(model, infer_inputs(httpclient, feeds))
    status = str(caught.value.status() or "")
    assert status.startswith("4") or "400" in str(caught.value), f"not a 4xx: {caught.value}"
    return str(caught.value)


@pytest.fixture
def containers() -> Iterator[list[pods.Container]]:
    started: list[pods.Container] = []
    yield started
    for container in started:
        container.stop()


@pytest.mark.parametrize("case", CASES)
def test_predictor_image_serves_the_rendered_runtime(case, built_images, test_models, containers) -> None:
    children = _children(case, "kserve", "fp32", built_images)
    runtime = _kind(children, "ServingRuntime")["spec"]
    isvc = _kind(children, "InferenceService")
    model_spec = isvc["spec"]["predictor"]["model"]
    container = dict(runtime["containers"][0])
    # What KServe adds for a pvc:// storageUri: the claim's sub-path at /mnt/models, read-only.
    container["volumeMounts"] = [*container["volumeMounts"], {"name": "model", "mountPath": "/mnt/models", "readOnly": True}]
    container["env"] = [*container.get("env", []), *model_spec.get("env", [])]
    variant = test_models / case / "1" / "kserve" / "fp32"
    name = isvc["metadata"]["name"]
    server = pods.run(built_images["predictor"], container, pod_security={},
                       volumes=[*runtime["volumes"], {"name": "model", "persistentVolumeClaim": {"claimName": "models"}}],
                       host_paths={"model": variant}, replace={"{{.Name}}": name})
    containers.append(server)
    port = container["ports"][0]["containerPort"]
    server.wait_http(port, f"/v2/models/{name}/ready")
    url = f"127.0.0.1:{server.published[port]}"
    _assert_answers(url, case, variant, TRITON_OUTPUTS[case], name)
    message = _assert_bad_tensor_refused(url, case, name)
    assert "shape" in message, message
    _assert_answers(url, case, variant, TRITON_OUTPUTS[case], name)    # still serving


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("case", CASES)
def test_triton_image_serves_the_rendered_pod(case, precision, built_images, test_models, containers,
                                              tmp_path) -> None:
    children = _children(case, "triton", precision, built_images)
    deployment = next(c for c in children if c["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (puller,) = pod["initContainers"]
    (tritonserver,) = pod["containers"]
    shared = tmp_path / "models-emptydir"          # the emptyDir both containers mount
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    host_paths = {"model-store": test_models, "models": shared}
    card = json.loads((test_models / case / "1" / "model-card.json").read_text())
    (entry,) = [v for v in card["variants"] if v["precision"] == precision]
    if entry["servable"]:
        logs = pods.run_to_completion(built_images["predictor"], puller, pod_security=pod["securityContext"],
                                       volumes=pod["volumes"], host_paths=host_paths)
        assert (shared / case / "config.pbtxt").is_file(), f"the puller wrote no repository:\n{logs}"
    else:
        # The build measured this variant over the card's accuracy budget (it depends on the small
        # model and the CPU's int8 kernels): the rendered pod's puller refuses it, naming why, which
        # is the pod's termination message in a cluster. The image must still load the graph, so the
        # layout is copied in as-is to show that.
        with pytest.raises(AssertionError, match="is not servable"):
            pods.run_to_completion(built_images["predictor"], puller, pod_security=pod["securityContext"],
                                   volumes=pod["volumes"], host_paths=host_paths)
        assert not any(shared.iterdir()), "a refused variant left files in the repository"
        source = test_models / case / "1" / "triton" / precision
        for model in (d for d in source.iterdir() if d.is_dir()):
            shutil.copytree(model, shared / model.name)
    server = pods.run(built_images["tritonserver"], tritonserver, pod_security=pod["securityContext"],
                       volumes=pod["volumes"], host_paths=host_paths)
    containers.append(server)
    port = next(p["containerPort"] for p in tritonserver["ports"] if p["name"] == "http")
    server.wait_http(port, "/v2/health/ready", timeout=180)
    url = f"127.0.0.1:{server.published[port]}"
    # The same graph in-process (the int8 one for int8: same machine, same kernels) is the reference.
    _assert_answers(url, case, test_models / case / "1" / "kserve" / precision, TRITON_OUTPUTS[case], case)
    _assert_bad_tensor_refused(url, case, case)
    metrics_port = next(p["containerPort"] for p in tritonserver["ports"] if p["name"] == "metrics")
    with urllib.request.urlopen(server.url(metrics_port, "/metrics"), timeout=5) as response:
        text = response.read().decode()
    # The series the canary analysis and the KEDA trigger read (docs/autoscaling.md).
    for series in ("nv_inference_request_success", "nv_inference_request_failure",
                   "nv_inference_pending_request_count", "nv_inference_request_summary_us"):
        assert series in text, f"tritonserver exports no {series}"
