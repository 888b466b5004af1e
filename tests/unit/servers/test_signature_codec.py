"""Input checks and the v2 REST codec (pure): typed errors naming the field, and fuzzed decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_predictors.servers import ERRORS, ServingError, Signature, TensorSpec, check_inputs
from mlsd_predictors.servers._codec import RequestedOutput, decode_rest, encode_rest, select_outputs
from mlsd_predictors.servers._errors import (
    BatchTooLarge, MalformedRequest, MissingInput, NonFiniteValue, UnknownInput, ValueOutOfRange, WrongDatatype,
    WrongShape,
)

SIGNATURE = Signature((TensorSpec("ids", "INT64", (3,), minimum=0), TensorSpec("x", "FP32", (2, 2))),
                      (TensorSpec("p", "FP32", (1,)),), max_batch_size=4)


def request(*tensors: dict, **extra) -> bytes:
    return json.dumps({"inputs": list(tensors), **extra}).encode()


def ids(rows: int = 1, values=None) -> dict:
    return {"name": "ids", "datatype": "INT64", "shape": [rows, 3], "data": values or [1] * (3 * rows)}


def x(rows: int = 1, values=None, shape=None) -> dict:
    return {"name": "x", "datatype": "FP32", "shape": shape or [rows, 2, 2], "data": values or [0.5] * (4 * rows)}


def check(body: bytes, header: str | None = None) -> dict[str, np.ndarray]:
    return check_inputs(decode_rest(body, header).inputs, SIGNATURE)


def test_valid_json_and_binary_requests_decode() -> None:
    arrays = check(request(ids(2), x(2)))
    assert arrays["ids"].dtype == np.int64 and arrays["ids"].shape == (2, 3)
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (2, 2, 2)
    raw_ids, raw_x = np.arange(6, dtype=np.int64).tobytes(), np.ones((2, 2, 2), np.float32).tobytes()
    header = json.dumps({"inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [2, 3], "parameters": {"binary_data_size": len(raw_ids)}},
        {"name": "x", "datatype": "FP32", "shape": [2, 2, 2], "parameters": {"binary_data_size": len(raw_x)}}],
        "parameters": {"binary_data_output": True}}).encode()
    decoded = decode_rest(header + raw_ids + raw_x, str(len(header)))
    arrays = check_inputs(decoded.inputs, SIGNATURE)
    assert arrays["ids"].tolist() == [[0, 1, 2], [3, 4, 5]] and decoded.binary_default


@pytest.mark.parametrize("body, error, field", [
    (request(ids(), {**x(), "name": "y"}), UnknownInput, "inputs[1].name"),
    (request(ids()), MissingInput, "inputs.x"),
    (request(ids(), x(), x()), MalformedRequest, "inputs[2].name"),
    (request({**ids(), "datatype": "INT32"}, x()), WrongDatatype, "inputs[0].datatype"),
    (request(ids(), x(shape=[1, 4])), WrongShape, "inputs[1].shape"),
    (request(ids(), x(shape=[0, 2, 2], values=[])), WrongShape, "inputs[1].shape"),
    (request(ids(1), x(2)), WrongShape, "inputs[1].shape[0]"),
    (request(ids(5), x(5)), BatchTooLarge, "inputs[0].shape[0]"),
    (request(ids(values=[1, 2]), x()), WrongShape, "inputs[0].data"),
    (request(ids(values=[1, -2, 3]), x()), ValueOutOfRange, "inputs[0].data"),
    (request(ids(values=[1.5, 2, 3]), x()), MalformedRequest, "inputs[0].data"),
    (request(ids(values=[2**64, 2, 3]), x()), MalformedRequest, "inputs[0].data"),
    (request(ids(), x(values=[1, 2, 3, "4"])), MalformedRequest, "inputs[1].data"),
    (request(ids(), {"name": "x", "datatype": "FP32", "shape": [1, 2, 2]}), MalformedRequest, "inputs[1].data"),
    (b"[1, 2]", MalformedRequest, "body"),
    (b"{", MalformedRequest, "body"),
    (request(), MalformedRequest, "inputs"),
])
def test_bad_requests_raise_typed_errors(body: bytes, error: type[ServingError], field: str) -> None:
    with pytest.raises(error) as raised:
        check(body)
    assert raised.value.field == field and raised.value.reason.startswith(field)


def test_non_finite_values_are_refused_with_their_position() -> None:
    raw = np.array([[[1, 2], [np.nan, 4]]], np.float32).tobytes()
    header = json.dumps({"inputs": [ids(), {"name": "x", "datatype": "FP32", "shape": [1, 2, 2],
                                            "parameters": {"binary_data_size": len(raw)}}]}).encode()
    with pytest.raises(NonFiniteValue, match=r"\[0, 1, 0\]") as raised:
        check(header + raw, str(len(header)))
    assert raised.value.http_status == 422


@pytest.mark.parametrize("header", ["abc", "0", "999999"])
def test_bad_binary_header_lengths(header: str) -> None:
    with pytest.raises(MalformedRequest) as raised:
        decode_rest(request(ids(), x()), header)
    assert raised.value.field == "Inference-Header-Content-Length"


def test_error_registry_codes_are_unique_client_errors() -> None:
    assert len({e.code for e in ERRORS}) == len(ERRORS)
    assert all(400 <= e.http_status < 500 for e in ERRORS)
    assert {e.grpc_code for e in ERRORS} <= {"INVALID_ARGUMENT", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED"}


def test_encode_json_and_binary_outputs() -> None:
    results = {"p": np.array([[0.25], [0.5]], np.float32), "ids": np.array([[1, 2], [3, 4]], np.int64)}
    outputs = select_outputs(results, [RequestedOutput("p", False)], False)
    body, headers = encode_rest("m", "1", "r1", results, outputs)
    assert json.loads(body) == {"model_name": "m", "model_version": "1", "id": "r1",
                                "outputs": [{"name": "p", "datatype": "FP32", "shape": [2, 1], "data": [0.25, 0.5]}]}
    body, headers = encode_rest("m", "1", None, results, select_outputs(results, None, True))
    length = int(headers["inference-header-content-length"])
    header = json.loads(body[:length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [8, 32]
    assert np.frombuffer(body[length + 8:], np.int64).tolist() == [1, 2, 3, 4]
    with pytest.raises(UnknownInput, match="outputs\\[0\\].name"):
        select_outputs(results, [RequestedOutput("nope", True)], True)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                           max_leaves=16)
tensor = st.fixed_dictionaries({"name": st.sampled_from(["ids", "x", "z"]) | st.text(max_size=3),
                                "datatype": st.sampled_from(["INT64", "FP32", "FP16", "BYTES", "BOOL"]) | st.text(max_size=4),
                                "shape": st.lists(st.integers(-2, 5), max_size=4) | json_values},
                               optional={"data": json_values | st.lists(st.integers(-3, 3) | st.floats(), max_size=24),
                                         "parameters": st.fixed_dictionaries(
                                             {}, optional={"binary_data_size": st.integers(-2, 80) | json_values})})


@settings(max_examples=600, deadline=None)
@given(payload=st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=3) | json_values},
                                     optional={"outputs": json_values, "parameters": json_values}),
       tail=st.binary(max_size=96), header=st.none() | st.integers(-2, 3000).map(str) | st.text(max_size=3))
def test_decoder_raises_only_serving_errors(payload, tail, header) -> None:
    body = json.dumps(payload, allow_nan=True).encode() + tail
    try:
        decoded = decode_rest(body, header)
        check_inputs(decoded.inputs, SIGNATURE)
        select_outputs({"p": np.zeros((1, 1), np.float32)}, decoded.outputs, decoded.binary_default)
    except ServingError:
        pass


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200), header=st.none() | st.integers(0, 200).map(str))
def test_decoder_on_random_bytes(raw, header) -> None:
    try:
        check_inputs(decode_rest(raw, header).inputs, SIGNATURE)
    except ServingError:
        pass


def _grpc_request(tensors, raw=None):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="m")
    for name, datatype, shape, values in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if values is not None:
            tensor.contents.int64_contents.extend(values) if datatype == "INT64" else tensor.contents.fp32_contents.extend(values)
    for chunk in raw or []:
        request.raw_input_contents.append(chunk)
    return request


def test_grpc_requests_decode_raw_and_typed_contents() -> None:
    from mlsd_predictors.servers._codec import decode_grpc

    raw = _grpc_request([("ids", "INT64", [1, 3], None), ("x", "FP32", [1, 2, 2], None)],
                        [np.arange(3, dtype=np.int64).tobytes(), np.ones(4, np.float32).tobytes()])
    assert check_inputs(decode_grpc(raw).inputs, SIGNATURE)["ids"].tolist() == [[0, 1, 2]]
    typed = _grpc_request([("ids", "INT64", [1, 3], [4, 5, 6]), ("x", "FP32", [1, 2, 2], [0.5] * 4)])
    assert check_inputs(decode_grpc(typed).inputs, SIGNATURE)["x"].shape == (1, 2, 2)
    with pytest.raises(MalformedRequest, match="raw_input_contents"):
        decode_grpc(_grpc_request([("ids", "INT64", [1, 3], None)], [b"", b""]))


@settings(max_examples=300, deadline=None)
@given(tensors=st.lists(st.tuples(st.sampled_from(["ids", "x", "q"]), st.sampled_from(["INT64", "FP32", "BYTES", "FP16"]),
                                  st.lists(st.integers(0, 5), max_size=4),
                                  st.none() | st.lists(st.integers(-5, 5), max_size=12)), max_size=3),
       raw=st.none() | st.lists(st.binary(max_size=40), max_size=3))
def test_grpc_decoder_raises_only_serving_errors(tensors, raw) -> None:
    from mlsd_predictors.servers._codec import decode_grpc

    try:
        check_inputs(decode_grpc(_grpc_request(tensors, raw)).inputs, SIGNATURE)
    except ServingError:
        pass
