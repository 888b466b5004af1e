"""Triton Python-backend model written by `mlsd build`: runs the model.onnx beside it with onnxruntime.

Inputs and outputs are the ones in config.pbtxt, by name. Requests that Triton batched together
run as one onnxruntime call when their non-batch shapes agree. Needs `onnxruntime` and `numpy`
in the Python backend's environment.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def session(path, parameters):
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(parameters.get("intra_op_threads", {}).get("string_value", "1"))
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_batched(requests, input_names, run):
    """Calls run(feeds) -> {name: array} once per group of requests with equal shapes; one
    InferenceResponse (or error response) per request, in order."""
    feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in input_names} for r in requests]
    groups = {}
    for i, f in enumerate(feeds):
        groups.setdefault(tuple(f[n].shape[1:] for n in input_names), []).append(i)
    responses = [None] * len(requests)
    for members in groups.values():
        sizes = [len(feeds[i][input_names[0]]) for i in members]
        try:
            outputs = run({n: np.concatenate([feeds[i][n] for i in members]) for n in input_names})
        except Exception as error:  # onnxruntime rejects bad values (e.g. an id out of range)
            for i in members:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
            continue
        start = 0
        for i, size in zip(members, sizes):
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(v[start : start + size])) for n, v in outputs.items()]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            start += size
    return responses


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        here = os.path.join(args["model_repository"], args["model_version"])
        self.session = session(os.path.join(here, "model.onnx"), config.get("parameters", {}))
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        def run(feeds):
            return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))

        return run_batched(requests, self.inputs, run)
