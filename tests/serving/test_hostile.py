"""Hostile input against real servers: fuzzed v2 gRPC requests, and broken model repositories.

gRPC fuzzing complements test_fuzz.py (REST): structured `ModelInferRequest`s with random names,
datatypes, shapes, raw contents and typed contents, and raw bytes that are not a protobuf at all.
No answer may be INTERNAL/UNKNOWN (the gRPC 5xx), and the server must still be ready afterwards.
Budget: MLSD_FUZZ_EXAMPLES examples per test (default 60; raise it for a longer local run).

Repositories: a truncated ONNX file, a card next to another case study's graph, and a symlink out of
the repository are refused at load with a message naming the file, while the previous version (the
session's running server) keeps answering.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from mlsd_predictors.pull import PullError, Rewrite, pull

from ._reference import inputs
from tests._support import free_port

from .conftest import HOST

pytestmark = pytest.mark.serving
CASE = "harmful-content"   # two inputs of different datatypes and ranks
EXAMPLES = int(os.environ.get("MLSD_FUZZ_EXAMPLES", "60"))
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
METHOD = "/inference.GRPCInferenceService/ModelInfer"

datatypes = st.sampled_from(["INT64", "FP32", "FP16", "BYTES", "BOOL", "UINT8", "INT8", "FP64", "int64", ""]) \
    | st.text(max_size=5)
names = st.sampled_from(["token_ids", "image", "nope", ""]) | st.text(max_size=8)
shapes = st.lists(st.integers(-3, 2**40), max_size=5)
tensors = st.fixed_dictionaries({
    "name": names, "datatype": datatypes, "shape": shapes,
    "raw": st.none() | st.binary(max_size=256),
    "ints": st.lists(st.integers(-2**63, 2**63 - 1), max_size=16),
    "floats": st.lists(st.floats(width=32), max_size=16),
})


def grpc_call(target: str, payload: bytes) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        try:
            call(payload, timeout=20)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            assert error.code() != grpc.StatusCode.DEADLINE_EXCEEDED, "the server hung on a hostile request"
            return error.code()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from([CASE, "", "nope"]), given_tensors=st.lists(tensors, max_size=3),
       raw_for_all=st.booleans(), extra_raw=st.lists(st.binary(max_size=32), max_size=2),
       outputs=st.lists(names, max_size=3))
def test_grpc_structured_requests_never_internal(kserve_servers, model, given_tensors, raw_for_all,
                                                 extra_raw, outputs) -> None:
    request = service_pb2.ModelInferRequest(model_name=model, id="fuzz")
    for t in given_tensors:
        tensor = request.inputs.add(name=t["name"], datatype=t["datatype"])
        tensor.shape.extend(t["shape"])
        if raw_for_all or t["raw"] is not None:
            request.raw_input_contents.append(t["raw"] or b"")
        else:
            tensor.contents.int64_contents.extend(t["ints"])
            tensor.contents.fp32_contents.extend(t["floats"])
    request.raw_input_contents.extend(extra_raw)
    for name in outputs:
        request.outputs.add(name=name)
    code = grpc_call(kserve_servers[CASE].grpc, request.SerializeToString())
    assert code not in SERVER_FAULTS, (code, request)


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=512))
def test_grpc_random_bytes_never_internal(kserve_servers, raw) -> None:
    assert grpc_call(kserve_servers[CASE].grpc, raw) not in SERVER_FAULTS


def test_grpc_valid_request_after_fuzzing(kserve_servers) -> None:
    request = service_pb2.ModelInferRequest(model_name=CASE)
    for name, value in inputs(CASE, 2).items():
        tensor = request.inputs.add(name=name, datatype="FP32" if value.dtype == np.float32 else "INT64")
        tensor.shape.extend(value.shape)
        request.raw_input_contents.append(value.tobytes())
    assert grpc_call(kserve_servers[CASE].grpc, request.SerializeToString()) == grpc.StatusCode.OK


# -- model repositories ------------------------------------------------------------------------------


def start_version(model_dir: Path, case: str) -> subprocess.CompletedProcess:
    """`python -m mlsd_predictors.servers.kserve` on a new version: it must refuse and exit, not serve."""
    return subprocess.run([sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={case}",
                           f"--model_name={case}", f"--model_dir={model_dir}", f"--host={HOST}",
                           f"--http_port={free_port()}", f"--grpc_port={free_port()}", "--ort_threads=1"],
                          capture_output=True, text=True, timeout=120)


def still_serving(endpoint, case: str = "ad-click-prediction") -> bool:
    body = {"inputs": [{"name": n, "datatype": "FP32" if v.dtype == np.float32 else "INT64", "shape": list(v.shape),
                        "data": v.ravel().tolist()} for n, v in inputs(case, 1).items()]}
    return httpx.post(f"http://{endpoint.http}/v2/models/{case}/infer", json=body, timeout=10).status_code == 200


@pytest.fixture
def variant(models_root: Path, tmp_path: Path) -> Path:
    """A copy of ad-click v1 fp32, to break."""
    target = tmp_path / "ad-click-prediction" / "9" / "kserve" / "fp32"
    shutil.copytree(models_root / "ad-click-prediction" / "1" / "kserve" / "fp32", target)
    return target


def test_truncated_onnx_is_refused_and_the_old_version_serves(kserve_servers, variant: Path) -> None:
    graph = variant / "model.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3])
    result = start_version(variant, "ad-click-prediction")
    assert result.returncode != 0
    assert "refusing to serve" in result.stderr and "not a loadable ONNX graph" in result.stderr, result.stderr[-2000:]
    assert str(graph) in result.stderr
    assert "Traceback" not in result.stderr
    assert still_serving(kserve_servers["ad-click-prediction"])


def test_card_that_does_not_match_the_graph_is_refused(kserve_servers, variant: Path, models_root: Path) -> None:
    shutil.copy(models_root / "harmful-content" / "1" / "kserve" / "fp32" / "model.onnx", variant / "model.onnx")
    result = start_version(variant, "ad-click-prediction")
    assert result.returncode != 0
    assert "card and model do not belong together" in result.stderr, result.stderr[-2000:]
    assert still_serving(kserve_servers["ad-click-prediction"])


def test_garbage_card_is_refused(kserve_servers, variant: Path) -> None:
    (variant / "model-card.json").write_bytes(b'{"schemaVersion": 1, "caseStudy": ' + os.urandom(64))
    result = start_version(variant, "ad-click-prediction")
    assert result.returncode != 0 and "is not a model card" in result.stderr, result.stderr[-2000:]
    assert still_serving(kserve_servers["ad-click-prediction"])


@pytest.mark.parametrize("source", ["s3://bucket/models/../../etc", "file:///models/ad/1/../../../etc",
                                    "gs://b/..", "/models/ad/..\\..\\etc"])
def test_pull_refuses_traversal(tmp_path: Path, source: str) -> None:
    with pytest.raises(PullError, match=r"'\.\.' path segments"):
        pull(source, tmp_path / "dest", "ad-click-prediction", Rewrite("KIND_CPU"))


def test_pull_refuses_a_link_out_of_the_repository(models_root: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(models_root / "ad-click-prediction" / "1" / "triton" / "fp32", repository)
    entry = next(p for p in repository.iterdir() if p.is_dir())
    (entry / "1" / "secrets").symlink_to("/etc")
    with pytest.raises(PullError, match="links outside the repository"):
        pull(str(repository), tmp_path / "dest", "ad-click-prediction", Rewrite("KIND_CPU"))
    assert not (tmp_path / "dest" / entry.name).exists(), "nothing half-copied is left for tritonserver"
