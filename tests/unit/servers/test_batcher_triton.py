"""The micro-batcher and the tritonserver repository localisation (pure, no servers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mlsd_predictors.pull import parse_config
from mlsd_predictors.servers._batcher import MicroBatcher
from mlsd_predictors.servers._triton import SHIM, TritonNotFound, find_tritonserver, localize, score_annotator


def test_concurrent_requests_share_executions_and_get_their_own_rows() -> None:
    batches: list[int] = []

    def compute(feeds):
        return {"y": feeds["x"] * 2}

    async def main():
        batcher = MicroBatcher(compute, max_batch_size=8, max_latency_ms=20, on_batch=batches.append)
        results = await asyncio.gather(*(batcher.submit({"x": np.full((2, 1), i, np.float32)}) for i in range(6)))
        batcher.close()
        return results

    results = asyncio.run(main())
    assert [r["y"][:, 0].tolist() for r in results] == [[2 * i, 2 * i] for i in range(6)]
    assert sum(batches) == 12 and max(batches) <= 8 and len(batches) < 6


def test_compute_errors_reach_every_waiting_request() -> None:
    def compute(feeds):
        raise RuntimeError("boom")

    async def main():
        batcher = MicroBatcher(compute, max_batch_size=4)
        outcome = await asyncio.gather(batcher.submit({"x": np.zeros((1, 1))}), return_exceptions=True)
        batcher.close()
        return outcome

    assert isinstance(asyncio.run(main())[0], RuntimeError)


CONFIG = """name: "ad-click-prediction"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [{ name: "dense" data_type: TYPE_FP32 dims: [ 6 ] }]
output [{ name: "click_probability" data_type: TYPE_FP32 dims: [ 1 ] }]
"""


def test_localize_puts_onnx_models_on_the_shim(tmp_path: Path) -> None:
    model = tmp_path / "repo" / "ad-click-prediction"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG)
    (model / "1" / "model.onnx").write_bytes(b"graph")
    (local,) = localize([tmp_path / "repo"], tmp_path / "work", native_onnxruntime=False, annotate=score_annotator)
    config = parse_config(local / "ad-click-prediction" / "config.pbtxt")
    assert config.backend == "python" and config.platform == "" and config.max_batch_size == 64
    assert config.parameters["mlsd_score_output"].string_value == "click_probability"
    assert (local / "ad-click-prediction" / "1" / "model.py").read_text() == SHIM.read_text()
    assert (local / "ad-click-prediction" / "1" / "model.onnx").read_bytes() == b"graph"
    (native,) = localize([tmp_path / "repo"], tmp_path / "native", native_onnxruntime=True, annotate=None)
    assert parse_config(native / "ad-click-prediction" / "config.pbtxt").platform == "onnxruntime_onnx"


def test_missing_tritonserver_names_the_install(monkeypatch) -> None:
    monkeypatch.setenv("MLSD_TRITONSERVER", "/nonexistent/tritonserver")
    with pytest.raises(TritonNotFound, match="MLSD_TRITONSERVER"):
        find_tritonserver()
    monkeypatch.delenv("MLSD_TRITONSERVER")
    import sys
    monkeypatch.setitem(sys.modules, "pytriton", None)
    with pytest.raises(TritonNotFound, match=r"pip install 'mlsd-serving\[serve\]'"):
        find_tritonserver()
