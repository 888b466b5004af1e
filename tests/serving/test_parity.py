"""Every case study, on both runtimes, over HTTP and gRPC, answers as in-process onnxruntime does."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from ._reference import CASES, KSERVE_EXTRA_OUTPUTS, TRITON_OUTPUTS, client, infer_inputs, inputs, reference

pytestmark = pytest.mark.serving
PROTOCOLS = {"http": httpclient, "grpc": grpcclient}


def assert_same(name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    if np.issubdtype(want.dtype, np.floating):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("runtime", ["kserve", "triton"])
@pytest.mark.parametrize("case", CASES)
def test_same_answers_as_onnxruntime(case, runtime, protocol, endpoints, models_root) -> None:
    endpoint = endpoints[(case, runtime)]
    module = PROTOCOLS[protocol]
    url = endpoint.http if protocol == "http" else endpoint.grpc
    expected_outputs = TRITON_OUTPUTS[case] + (KSERVE_EXTRA_OUTPUTS[case] if runtime == "kserve" else ())
    for rows, seed in ((1, 1), (5, 2)):
        feeds = inputs(case, rows, seed)
        want = reference(case, models_root / case / "1" / "kserve" / "fp32", feeds)
        result = client(module, url).infer(case, infer_inputs(module, feeds))
        for name in expected_outputs:
            assert_same(f"{runtime}/{protocol}/{name}", result.as_numpy(name), want[name])


@pytest.mark.parametrize("runtime", ["kserve", "triton"])
def test_json_tensors_over_http(runtime, endpoints, models_root) -> None:
    """tritonclient's non-binary (plain JSON) encoding decodes to the same answer."""
    case = "ad-click-prediction"
    feeds = inputs(case, 3, 7)
    want = reference(case, models_root / case / "1" / "kserve" / "fp32", feeds)
    outputs = [httpclient.InferRequestedOutput("click_probability", binary_data=False)]
    result = client(httpclient, endpoints[(case, runtime)].http).infer(
        case, infer_inputs(httpclient, feeds, binary=False), outputs=outputs)
    assert_same("click_probability", result.as_numpy("click_probability"), want["click_probability"])


def test_kserve_metadata_names_the_signature(kserve_servers) -> None:
    metadata = client(httpclient, kserve_servers["video-recommendation"].http).get_model_metadata("video-recommendation")
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("user_id", "INT64", [-1, 1]), ("user_features", "FP32", [-1, 15])]
    assert [o["name"] for o in metadata["outputs"]] == ["candidate_ids", "scores", "ranked_ids", "ranked_scores"]


def test_kserve_v1_protocol(kserve_servers, models_root) -> None:
    import httpx

    case = "ad-click-prediction"
    feeds = inputs(case, 2, 3)
    want = reference(case, models_root / case / "1" / "kserve" / "fp32", feeds)
    body = {"instances": [{name: value[i].tolist() for name, value in feeds.items()} for i in range(2)]}
    response = httpx.post(f"http://{kserve_servers[case].http}/v1/models/{case}:predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    got = np.array([p["click_probability"] for p in response.json()["predictions"]], np.float32)
    assert_same("click_probability", got, want["click_probability"])
