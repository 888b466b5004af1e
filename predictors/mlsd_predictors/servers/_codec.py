"""Open Inference Protocol (v2) REST bodies: JSON, and JSON + binary tensors (the extension
tritonclient uses by default, `Inference-Header-Content-Length`).

Our own decoder instead of KServe's because it must never fail with anything but a ServingError
(it is fuzzed), and because binary tensors should stay bytes until `np.frombuffer` (KServe turns
them into Python lists and back). Decoding is lazy: names, datatypes and shapes are checked
against the signature first (`_signature.check_inputs`), data is only materialised after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import orjson
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from ._errors import MalformedRequest, UnknownInput
from ._signature import RawTensor

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class DecodedRequest:
    id: str | None
    inputs: list[RawTensor]
    outputs: list[RequestedOutput] | None
    binary_default: bool
    parameters: dict = field(default_factory=dict)


def _json_data_decoder(data: object, datatype: str, index: int):
    def decode() -> np.ndarray:
        if datatype in ("BYTES", "FP16", "BF16"):
            raise MalformedRequest(f"inputs[{index}].data", f"{datatype} data must be sent as binary")
        dtype = triton_to_np_dtype(datatype)
        if dtype is None:
            raise MalformedRequest(f"inputs[{index}].datatype", f"unknown datatype {datatype!r}")
        flat = _flatten(data, f"inputs[{index}].data")
        if any(isinstance(v, bool) for v in flat) and datatype != "BOOL":
            raise MalformedRequest(f"inputs[{index}].data", "booleans are only valid for BOOL tensors")
        if any(not isinstance(v, (int, float)) for v in flat):
            raise MalformedRequest(f"inputs[{index}].data", "data must hold numbers")
        if datatype in ("FP32", "FP64"):
            return np.array(flat, dtype=dtype)
        if any(isinstance(v, float) for v in flat):
            raise MalformedRequest(f"inputs[{index}].data", f"{datatype} data must hold integers")
        info = np.iinfo(dtype) if datatype != "BOOL" else None
        if info is not None and flat and (min(flat) < info.min or max(flat) > info.max):
            raise MalformedRequest(f"inputs[{index}].data", f"values outside the {datatype} range")
        return np.array(flat, dtype=dtype)

    return decode


def _flatten(data: object, field_name: str) -> list:
    out: list = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _binary_decoder(raw: memoryview, datatype: str, shape: object, index: int):
    def decode() -> np.ndarray:
        dtype = triton_to_np_dtype(datatype)
        if dtype is None or datatype == "BYTES":
            raise MalformedRequest(f"inputs[{index}].datatype", f"unsupported binary datatype {datatype!r}")
        itemsize = np.dtype(dtype).itemsize
        count = math.prod(shape)  # type: ignore[arg-type]
        if len(raw) != count * itemsize:
            raise MalformedRequest(f"inputs[{index}].parameters.binary_data_size",
                                   f"{len(raw)} bytes do not hold {count} {datatype} values")
        return np.frombuffer(raw, dtype=dtype)

    return decode


def decode_rest(body: bytes, header_length: str | None) -> DecodedRequest:
    """Parses a v2 infer request body; raises MalformedRequest naming the field at fault."""
    if header_length is not None:
        try:
            json_length = int(header_length)
        except ValueError as err:
            raise MalformedRequest("Inference-Header-Content-Length", f"not an integer: {header_length!r}") from err
        if not 0 < json_length <= len(body):
            raise MalformedRequest("Inference-Header-Content-Length",
                                   f"{json_length} is outside the body's {len(body)} bytes")
    else:
        json_length = len(body)
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as err:
        raise MalformedRequest("body", f"not valid JSON: {err}") from err
    if not isinstance(header, dict):
        raise MalformedRequest("body", "the request must be a JSON object")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise MalformedRequest("inputs", "a non-empty list of input tensors is required")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise MalformedRequest("parameters", "must be an object")

    binary = memoryview(body)[json_length:]
    offset = 0
    tensors: list[RawTensor] = []
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise MalformedRequest(f"inputs[{i}]", "each input must be an object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(datatype, str):
            raise MalformedRequest(f"inputs[{i}].datatype", "a datatype string is required")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise MalformedRequest(f"inputs[{i}].parameters", "must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise MalformedRequest(f"inputs[{i}].parameters.binary_data_size",
                                       f"{size!r} does not fit the {len(binary) - offset} binary bytes left")
            # Only called after check_inputs accepted the shape.
            decoder = _binary_decoder(binary[offset:offset + size], datatype, shape, i)
            offset += size
        elif "data" in item:
            decoder = _json_data_decoder(item["data"], datatype, i)
        else:
            raise MalformedRequest(f"inputs[{i}].data", "no data and no binary_data_size")
        tensors.append(RawTensor(name, datatype, shape, decoder))
    if offset != len(binary):
        raise MalformedRequest("body", f"{len(binary) - offset} binary bytes follow the inputs unused")

    requested = header.get("outputs")
    outputs = None
    binary_default = bool(parameters.get("binary_data_output", False))
    if requested is not None:
        if not isinstance(requested, list):
            raise MalformedRequest("outputs", "must be a list")
        outputs = []
        for i, out in enumerate(requested):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise MalformedRequest(f"outputs[{i}].name", "each requested output needs a name")
            out_params = out.get("parameters") or {}
            if not isinstance(out_params, dict):
                raise MalformedRequest(f"outputs[{i}].parameters", "must be an object")
            outputs.append(RequestedOutput(out["name"], bool(out_params.get("binary_data", binary_default))))
    request_id = header.get("id")
    return DecodedRequest(request_id if isinstance(request_id, str) else None, tensors, outputs,
                          binary_default, parameters)


_GRPC_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                  "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                  "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
                  "FP64": "fp64_contents"}


def _grpc_contents_decoder(tensor, datatype: str, index: int):
    def decode() -> np.ndarray:
        field = _GRPC_CONTENTS.get(datatype)
        if field is None:
            raise MalformedRequest(f"inputs[{index}].contents", f"{datatype} data must be sent as raw_input_contents")
        return np.array(getattr(tensor.contents, field), dtype=triton_to_np_dtype(datatype))

    return decode


def decode_grpc(request) -> DecodedRequest:
    """A v2 gRPC `ModelInferRequest` (any protobuf with its fields) as a DecodedRequest; raw
    tensors stay bytes until `np.frombuffer`, as over REST."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise MalformedRequest("raw_input_contents", f"{len(raw)} raw tensors for {len(request.inputs)} inputs")
    tensors = []
    for i, tensor in enumerate(request.inputs):
        shape = list(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise MalformedRequest(f"inputs[{i}].contents", "give contents or raw_input_contents, not both")
            decoder = _binary_decoder(memoryview(raw[i]), tensor.datatype, shape, i)
        else:
            decoder = _grpc_contents_decoder(tensor, tensor.datatype, i)
        tensors.append(RawTensor(tensor.name, tensor.datatype, shape, decoder))
    outputs = [RequestedOutput(o.name, True) for o in request.outputs] or None
    return DecodedRequest(request.id or None, tensors, outputs, True)


def select_outputs(available: dict[str, np.ndarray], requested: list[RequestedOutput] | None,
                   binary_default: bool) -> list[RequestedOutput]:
    if requested is None:
        return [RequestedOutput(name, binary_default) for name in available]
    for i, out in enumerate(requested):
        if out.name not in available:
            raise UnknownInput(f"outputs[{i}].name", f"unknown output {out.name!r}; "
                               f"this model returns {', '.join(available)}")
    return requested


def encode_rest(model_name: str, model_version: str, request_id: str | None, results: dict[str, np.ndarray],
                outputs: list[RequestedOutput], parameters: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """A v2 infer response body (+ headers): JSON data, or binary where the client asked."""
    header_outputs, chunks = [], []
    for out in outputs:
        array = np.ascontiguousarray(results[out.name])
        entry: dict = {"name": out.name, "datatype": np_to_triton_dtype(array.dtype), "shape": list(array.shape)}
        if out.binary:
            raw = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.ravel().tolist()
        header_outputs.append(entry)
    document: dict = {"model_name": model_name, "model_version": model_version, "outputs": header_outputs}
    if request_id is not None:
        document["id"] = request_id
    if parameters:
        document["parameters"] = parameters
    header = orjson.dumps(document)
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {"content-type": "application/octet-stream",
                                       "inference-header-content-length": str(len(header))}
