"""Triton Python-backend model written by `mlsd build`: an ONNX encoder followed by an ANN search.

model.onnx (beside this file) turns the inputs into an embedding (parameter `embedding_output`);
the usearch index (parameter `index_file`, keys = catalogue ids) returns the `top_k` nearest ids
and cosine similarities as `ids_output` / `scores_output`. If the config lists the embedding as
an output it is returned too. Ids are -1 (score -1) where the index holds fewer than top_k items.
Needs `onnxruntime`, `usearch` and `numpy` in the Python backend's environment.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from usearch.index import Index


def parameter(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    if value is None and default is None:
        raise pb_utils.TritonModelException(f"config.pbtxt lacks parameter {key!r}")
    return value if value is not None else default


def run_batched(requests, input_names, run):
    """One onnxruntime/usearch call per group of requests with equal shapes (see onnx_model.py)."""
    feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in input_names} for r in requests]
    groups = {}
    for i, f in enumerate(feeds):
        groups.setdefault(tuple(f[n].shape[1:] for n in input_names), []).append(i)
    responses = [None] * len(requests)
    for members in groups.values():
        sizes = [len(feeds[i][input_names[0]]) for i in members]
        try:
            outputs = run({n: np.concatenate([feeds[i][n] for i in members]) for n in input_names})
        except Exception as error:
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
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameter(config, "intra_op_threads", "1"))
        model = os.path.join(here, "model.onnx")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.index = Index.restore(os.path.join(here, parameter(config, "index_file")), view=True)
        self.embedding = parameter(config, "embedding_output")
        self.top_k = int(parameter(config, "top_k"))
        self.ids_output = parameter(config, "ids_output", "neighbour_ids")
        self.scores_output = parameter(config, "scores_output", "neighbour_scores")
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        def run(feeds):
            (embedding,) = self.session.run([self.embedding], feeds)
            queries = np.ascontiguousarray(embedding, dtype=np.float32).reshape(len(embedding), -1)
            matches = self.index.search(queries, self.top_k)
            # usearch answers one query with `Matches` (1-D, only what it found, no `counts`) and
            # several with `BatchMatches`; pad to top_k either way (mlsd_predictors.servers._ann_lookup).
            counts = np.asarray(getattr(matches, "counts", [len(matches)])).reshape(-1, 1)
            keys = np.asarray(matches.keys).reshape(len(queries), -1).astype(np.int64)
            distances = np.asarray(matches.distances).reshape(len(queries), -1)
            found = np.arange(keys.shape[1])[None, :] < counts
            if keys.shape[1] < self.top_k:
                pad = ((0, 0), (0, self.top_k - keys.shape[1]))
                keys, distances, found = np.pad(keys, pad), np.pad(distances, pad), np.pad(found, pad)
            results = {
                self.embedding: embedding,
                self.ids_output: np.where(found, keys, -1),
                self.scores_output: np.where(found, 1.0 - distances, -1.0).astype(np.float32),
            }
            return {name: results[name] for name in self.outputs}

        return run_batched(requests, self.inputs, run)
