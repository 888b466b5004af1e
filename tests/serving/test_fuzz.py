"""Random payloads against the real KServe predictor's v2 decoders: never a 5xx, never a crash."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.serving
CASE = "harmful-content"   # two inputs of different datatypes and ranks

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=5))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
names = st.sampled_from(["token_ids", "image", "nope", ""]) | st.text(max_size=8)
datatypes = st.sampled_from(["INT64", "FP32", "FP16", "BYTES", "BOOL", "UINT8", "int64", ""]) | st.text(max_size=5)
shapes = st.lists(st.integers(-3, 40), max_size=5) | json_values
tensors = st.fixed_dictionaries(
    {"name": names, "datatype": datatypes, "shape": shapes},
    optional={"data": json_values | st.lists(st.integers(-5, 5) | st.floats(-1, 1), max_size=64),
              "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-4, 64) | json_values})})
requests = st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=3) | json_values},
                                 optional={"outputs": json_values, "parameters": json_values, "id": json_values})


def post(url: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, content=content, headers=headers or {}, timeout=30)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests, tail=st.binary(max_size=64), header_length=st.none() | st.integers(-2, 4096) | st.text(alphabet="0123456789-+xe.", max_size=4))
def test_structured_payloads_never_5xx(kserve_servers, request, tail, header_length) -> None:
    url = f"http://{kserve_servers[CASE].http}/v2/models/{CASE}/infer"
    header = json.dumps(request).encode()
    headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    response = post(url, header + tail, headers)
    assert response.status_code < 500, (response.status_code, response.text, request)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=256))
def test_random_bytes_never_5xx(kserve_servers, raw) -> None:
    server = kserve_servers[CASE].http
    assert post(f"http://{server}/v2/models/{CASE}/infer", raw).status_code < 500
    assert post(f"http://{server}/v1/models/{CASE}:predict", raw).status_code < 500


def test_server_still_ready_after_fuzzing(kserve_servers) -> None:
    assert httpx.get(f"http://{kserve_servers[CASE].http}/v2/models/{CASE}/ready").status_code == 200
