"""Every bad input gets its 4xx naming the field, on both protocols, and the server keeps serving."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import MAX_REQUEST_BYTES
from ._reference import client, infer_inputs, inputs

pytestmark = pytest.mark.serving
CASE = "ad-click-prediction"


def good(rows: int = 1) -> dict[str, np.ndarray]:
    return inputs(CASE, rows, 11)


def tensor(name: str, array: np.ndarray, datatype: str | None = None) -> dict:
    return {"name": name, "datatype": datatype or ("INT64" if array.dtype == np.int64 else "FP32"),
            "shape": list(array.shape), "data": array.ravel().tolist()}


def body(**overrides) -> dict:
    feeds = good()
    items = [tensor("sparse_ids", feeds["sparse_ids"]), tensor("dense", feeds["dense"])]
    return {"inputs": overrides.get("inputs", items)}


F = good()
JSON_CASES = {
    "unknown name": ({"inputs": [tensor("sparse_ids", F["sparse_ids"]), tensor("densee", F["dense"])]},
                     400, "unknown_input", "inputs[1].name"),
    "missing input": ({"inputs": [tensor("sparse_ids", F["sparse_ids"])]}, 400, "missing_input", "inputs.dense"),
    "wrong datatype": ({"inputs": [tensor("sparse_ids", F["sparse_ids"].astype(np.float32)), tensor("dense", F["dense"])]},
                       400, "wrong_datatype", "inputs[0].datatype"),
    "wrong shape": ({"inputs": [tensor("sparse_ids", F["sparse_ids"]), tensor("dense", F["dense"][:, :5])]},
                    400, "wrong_shape", "inputs[1].shape"),
    "data/shape mismatch": ({"inputs": [tensor("sparse_ids", F["sparse_ids"]),
                                        {**tensor("dense", F["dense"]), "data": [1.0, 2.0]}]},
                            400, "wrong_shape", "inputs[1].data"),
    "batch over limit": ({"inputs": [tensor("sparse_ids", good(65)["sparse_ids"]), tensor("dense", good(65)["dense"])]},
                         413, "batch_too_large", "inputs[0].shape[0]"),
    "negative id": ({"inputs": [tensor("sparse_ids", -F["sparse_ids"] - 1), tensor("dense", F["dense"])]},
                    422, "out_of_range", "inputs[0].data"),
    "strings as data": ({"inputs": [tensor("sparse_ids", F["sparse_ids"]), {**tensor("dense", F["dense"]),
                                                                            "data": ["a"] * 6}]},
                        400, "malformed_request", "inputs[1].data"),
    "no inputs": ({"inputs": []}, 400, "malformed_request", "inputs"),
}


@pytest.mark.parametrize("name", JSON_CASES)
def test_kserve_http_json_errors(name, kserve_servers) -> None:
    payload, status, code, field = JSON_CASES[name]
    url = f"http://{kserve_servers[CASE].http}/v2/models/{CASE}/infer"
    response = httpx.post(url, content=json.dumps(payload), timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["field"] == field, response.text
    assert field in response.json()["error"]


def test_kserve_http_binary_errors(kserve_servers) -> None:
    http = client(httpclient, kserve_servers[CASE].http)
    nan = good()
    nan["dense"][0, 3] = np.nan
    with pytest.raises(InferenceServerException) as err:
        http.infer(CASE, infer_inputs(httpclient, nan))
    assert err.value.status() == "422" and "inputs[1].data" in err.value.message() and "non-finite" in err.value.message()
    inf = good()
    inf["dense"][0, 0] = np.inf
    with pytest.raises(InferenceServerException, match="non-finite"):
        http.infer(CASE, infer_inputs(httpclient, inf))

    url = f"http://{kserve_servers[CASE].http}/v2/models/{CASE}/infer"
    too_big = httpx.post(url, content=b"x" * (MAX_REQUEST_BYTES + 1), timeout=30)
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    assert httpx.post(url, content=b"{not json", timeout=30).status_code == 400
    header = json.dumps({"inputs": [{"name": "dense", "datatype": "FP32", "shape": [1, 6],
                                     "parameters": {"binary_data_size": 24}}]}).encode()
    short = httpx.post(url, content=header + b"\0" * 8, headers={"Inference-Header-Content-Length": str(len(header))})
    assert short.status_code == 400 and short.json()["field"] == "inputs[0].parameters.binary_data_size"
    unknown_model = httpx.post(f"http://{kserve_servers[CASE].http}/v2/models/nope/infer", json=body())
    assert unknown_model.status_code == 404
    assert http.infer(CASE, infer_inputs(httpclient, good())).as_numpy("ctr").shape == (1, 1)   # still serving


GRPC_CASES = {
    "unknown name": (lambda f: {"sparse_ids": f["sparse_ids"], "densee": f["dense"]}, "INVALID_ARGUMENT", "inputs[1].name"),
    "wrong datatype": (lambda f: {"sparse_ids": f["sparse_ids"].astype(np.float32), "dense": f["dense"]},
                       "INVALID_ARGUMENT", "inputs[0].datatype"),
    "wrong shape": (lambda f: {"sparse_ids": f["sparse_ids"], "dense": f["dense"][:, :4]}, "INVALID_ARGUMENT",
                    "inputs[1].shape"),
    "batch over limit": (lambda f: good(65), "OUT_OF_RANGE", "inputs[0].shape[0]"),
    "non-finite": (lambda f: {**f, "dense": np.full_like(f["dense"], np.nan)}, "INVALID_ARGUMENT", "inputs[1].data"),
    "negative id": (lambda f: {**f, "sparse_ids": -f["sparse_ids"] - 1}, "INVALID_ARGUMENT", "inputs[0].data"),
    "payload over size": (lambda f: {"sparse_ids": np.zeros((64, 8), np.int64),
                                     "dense": np.zeros((64, 6), np.float32),
                                     "padding": np.zeros(MAX_REQUEST_BYTES // 4, np.float32)},
                          "RESOURCE_EXHAUSTED", ""),
}


@pytest.mark.parametrize("name", GRPC_CASES)
def test_kserve_grpc_errors(name, kserve_servers) -> None:
    make, status, field = GRPC_CASES[name]
    grpc = client(grpcclient, kserve_servers[CASE].grpc)
    with pytest.raises(InferenceServerException) as err:
        grpc.infer(CASE, infer_inputs(grpcclient, make(good())))
    assert err.value.status() == f"StatusCode.{status}", err.value.message()
    assert field in err.value.message()
    assert grpc.infer(CASE, infer_inputs(grpcclient, good())).as_numpy("ctr").shape == (1, 1)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_rejects_the_same_requests(protocol, triton_server) -> None:
    """tritonserver checks names, datatypes, shapes and batch size itself; the local ONNX shim adds
    non-finite values (the NGC image's native backend would pass them to onnxruntime)."""
    module = httpclient if protocol == "http" else grpcclient
    endpoint = triton_server[CASE]
    c = client(module, endpoint.http if protocol == "http" else endpoint.grpc)
    nan = good()
    nan["dense"][0, 0] = np.nan
    for feeds in ({"sparse_ids": F["sparse_ids"], "densee": F["dense"]},
                  {"sparse_ids": F["sparse_ids"].astype(np.float32), "dense": F["dense"]},
                  {"sparse_ids": F["sparse_ids"], "dense": F["dense"][:, :5]},
                  good(65), nan):
        with pytest.raises(InferenceServerException) as err:
            c.infer(CASE, infer_inputs(module, feeds))
        assert err.value.status() in ("400", "StatusCode.INVALID_ARGUMENT"), (feeds.keys(), err.value)
    assert c.infer(CASE, infer_inputs(module, good())).as_numpy("click_probability").shape == (1, 1)


def test_not_servable_variant_is_refused_at_start(models_root, tmp_path) -> None:
    """The predictor entrypoint exits with the card's reason instead of serving a gated variant."""
    import shutil
    import subprocess
    import sys

    variant = tmp_path / "int8"
    shutil.copytree(models_root / CASE / "1" / "kserve" / "int8", variant)
    card = json.loads((variant / "model-card.json").read_text())
    card["servable"] = False
    card["notServableReason"] = "auc is 2.00% worse than fp32 (threshold 1.00%)"
    (variant / "model-card.json").write_text(json.dumps(card))
    result = subprocess.run([sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={CASE}",
                             f"--model_dir={variant}", "--host=127.0.0.1", "--http_port=0", "--grpc_port=0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "refusing to serve" in result.stderr and "not servable: auc is 2.00% worse" in result.stderr
