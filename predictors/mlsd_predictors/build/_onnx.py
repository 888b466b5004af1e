"""ONNX export (dynamic batch axis), onnxruntime runners, parity against torch, latency."""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .._card import Latency, Signature, TensorSpec
from ..casestudies import Graph

OPSET = 17
# Single-threaded sessions: latency figures that do not depend on what else the machine runs and
# match one Triton/KServe instance per core. Override with MLSD_ORT_THREADS.
ORT_THREADS = int(os.environ.get("MLSD_ORT_THREADS", "1"))
PARITY_RTOL, PARITY_ATOL = 1e-3, 1e-4
_DATATYPES = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(int64)": "INT64", "tensor(int32)": "INT32"}


def export(graph: Graph, path: Path) -> None:
    """TorchScript-based export (dynamo=False: the dynamo exporter needs onnxscript, not installed)."""
    names = list(graph.example_inputs)
    axes = {name: {0: "batch"} for name in [*names, *graph.output_names]}
    for name, extra in graph.variable_axes.items():
        axes[name] |= {axis: f"{name}_{axis}" for axis in extra}
    args = tuple(torch.from_numpy(np.ascontiguousarray(graph.example_inputs[n])) for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.module.eval(), args, str(path), input_names=names, output_names=list(graph.output_names),
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )  # fmt: skip


class OnnxRunner:
    """An onnxruntime CPU session that runs large inputs in chunks along the batch axis."""

    def __init__(self, path: Path, threads: int = ORT_THREADS, chunk: int = 4096) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path, self.threads, self.chunk = Path(path), threads, chunk
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(feeds.values())))
        pieces = [
            self.session.run(None, {k: np.ascontiguousarray(v[start : start + self.chunk]) for k, v in feeds.items()})
            for start in range(0, rows, self.chunk)
        ]
        return {name: np.concatenate([p[i] for p in pieces]) for i, name in enumerate(self.output_names)}

    def signature(self) -> Signature:
        def spec(arg) -> TensorSpec:
            shape = [d if isinstance(d, int) else -1 for d in arg.shape]
            return TensorSpec(name=arg.name, datatype=_DATATYPES[arg.type], shape=[-1, *shape[1:]])

        return Signature(
            inputs=[spec(i) for i in self.session.get_inputs()], outputs=[spec(o) for o in self.session.get_outputs()]
        )

    def latency(self, example: Mapping[str, np.ndarray], repeats: int, warmup: int = 3) -> Latency:
        """Median wall time (ms) of one run at batch 1 and at batch 64, rows taken from `example`."""

        def median_ms(batch: int) -> float:
            feeds = {k: np.ascontiguousarray(np.resize(v, (batch, *v.shape[1:]))) for k, v in example.items()}
            for _ in range(warmup):
                self.session.run(None, feeds)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                self.session.run(None, feeds)
                times.append((time.perf_counter() - start) * 1000)
            return round(statistics.median(times), 4)

        return Latency(
            batch1=median_ms(1), batch64=median_ms(64), threads=self.threads, repeats=repeats,
            load_average=round(os.getloadavg()[0], 2),
        )  # fmt: skip


@torch.no_grad()
def torch_outputs(graph: Graph) -> dict[str, np.ndarray]:
    out = graph.module.eval()(*(torch.from_numpy(np.ascontiguousarray(v)) for v in graph.example_inputs.values()))
    out = out if isinstance(out, tuple) else (out,)
    return {name: o.numpy() for name, o in zip(graph.output_names, out, strict=True)}


def parity(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray]) -> tuple[float, float, bool]:
    """Max and mean absolute error over all outputs, and whether every output is within rtol/atol."""
    errors, close = [], True
    for name, want in expected.items():
        got = actual[name].astype(np.float64)
        errors.append(np.abs(got - want).ravel())
        close &= bool(np.allclose(got, want, rtol=PARITY_RTOL, atol=PARITY_ATOL))
    error = np.concatenate(errors)
    return float(error.max()), float(error.mean()), close
