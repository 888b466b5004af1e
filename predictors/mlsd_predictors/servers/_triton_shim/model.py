"""Python-backend stand-in for Triton's onnxruntime backend, for the tritonserver in the pytriton wheel.

That binary ships only the Python backend, so the launcher (`_triton.py`) serves each
`platform: "onnxruntime_onnx"` model of a repository through this file: same name, inputs, outputs,
`max_batch_size` and dynamic batching as the original config, the ONNX graph run by onnxruntime on
the batch Triton's scheduler formed. It also exports the mlsd series (batch size, prediction-score
histogram with the shared fixed buckets) next to Triton's own `nv_*` metrics, and refuses
non-finite inputs with INVALID_ARG (HTTP 400), which the native backend would pass through.
On the NGC image none of this is used: the repository runs unchanged on the native backend.

Parameters the launcher adds to the config: mlsd_onnx_file, mlsd_case_study, mlsd_score_output,
mlsd_score_select (all | first | max), mlsd_score_labels (comma-separated column names).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from mlsd_contract.metrics import BATCH, BATCH_BUCKETS, SCORE, SCORE_BUCKETS


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("MLSD_ORT_THREADS", "0"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(version_dir / params.get("mlsd_onnx_file", "model.onnx")),
                                            options, providers=["CPUExecutionProvider"])
        self.inputs = [(i["name"], i["data_type"].removeprefix("TYPE_")) for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.score_output = params.get("mlsd_score_output") or None
        self.score_select = params.get("mlsd_score_select", "all")
        self.score_labels = [s for s in params.get("mlsd_score_labels", "").split(",") if s]
        labels = {
            "model": args["model_name"],
            "version": args["model_version"],
            "track": os.environ.get("MLSD_TRACK", "stable"),
            "case_study": params.get("mlsd_case_study", args["model_name"]),
        }
        self._families = [
            pb_utils.MetricFamily(name=BATCH.name, description=BATCH.help,
                                  kind=pb_utils.MetricFamily.HISTOGRAM),
            pb_utils.MetricFamily(name=SCORE.name, description=SCORE.help,
                                  kind=pb_utils.MetricFamily.HISTOGRAM),
        ]
        self.batch_metric = self._families[0].Metric(labels=labels, buckets=list(BATCH_BUCKETS))
        self.score_metrics = {}
        if self.score_output:
            names = self.score_labels or [self.score_output]
            self.score_metrics = {name: self._families[1].Metric(labels={**labels, "output": name},
                                                                 buckets=list(SCORE_BUCKETS))
                                  for name in names}

    def _feeds(self, request) -> dict[str, np.ndarray]:
        feeds = {}
        for name, datatype in self.inputs:
            array = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            if datatype.startswith("FP") and not np.isfinite(array).all():
                position = [int(x) for x in np.argwhere(~np.isfinite(array))[0]]
                raise ValueError(f"{name}: non-finite value at {position}")
            feeds[name] = array
        return feeds

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        batch: list[tuple[int, dict[str, np.ndarray]]] = []
        for i, request in enumerate(requests):
            try:
                batch.append((i, self._feeds(request)))
            except ValueError as err:
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG))
        if batch:
            rows = [len(next(iter(feeds.values()))) for _, feeds in batch]
            joined = {name: np.concatenate([feeds[name] for _, feeds in batch]) for name, _ in self.inputs}
            results = dict(zip(self.outputs, self.session.run(self.outputs, joined), strict=True))
            self.batch_metric.observe(float(sum(rows)))
            self._observe_scores(results)
            start = 0
            for (i, _), count in zip(batch, rows, strict=True):
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(results[name][start:start + count]))
                           for name in self.outputs]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += count
        return responses

    def _observe_scores(self, results: dict[str, np.ndarray]) -> None:
        if not self.score_output:
            return
        scores = np.asarray(results[self.score_output], dtype=np.float64)
        scores = scores.reshape(len(scores), -1)
        if self.score_select == "first":
            scores = scores[:, :1]
        elif self.score_select == "max":
            scores = scores.max(axis=1, keepdims=True)
        if self.score_labels:
            for column, name in enumerate(self.score_labels):
                for value in scores[:, column]:
                    self.score_metrics[name].observe(float(value))
        else:
            for value in scores.ravel():
                self.score_metrics[self.score_output].observe(float(value))

    def finalize(self) -> None:
        self.score_metrics.clear()
        self.batch_metric = None
        self._families.clear()
