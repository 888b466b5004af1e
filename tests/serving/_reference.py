"""Requests per case study and the answers in-process onnxruntime (+ the usearch index) gives for them:
the ground truth both runtimes are compared with."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
from usearch.index import Index

from tests._support.models import CASES  # noqa: F401  (re-exported: the tiers import it from here)

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
TRITON_OUTPUTS = {
    "ad-click-prediction": ("click_probability",),
    "harmful-content": ("probabilities",),
    "visual-search": ("embedding", "neighbour_ids", "neighbour_scores"),
    "video-recommendation": ("candidate_ids", "scores"),
}
KSERVE_EXTRA_OUTPUTS = {
    "ad-click-prediction": ("ctr",),
    "harmful-content": ("decisions",),
    "visual-search": (),
    "video-recommendation": ("ranked_ids", "ranked_scores"),
}


def inputs(case: str, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if case == "ad-click-prediction":
        return {"sparse_ids": rng.integers(0, 1_000_000, size=(rows, 8)).astype(np.int64),
                "dense": rng.lognormal(1.0, 1.0, size=(rows, 6)).astype(np.float32)}
    if case == "harmful-content":
        return {"token_ids": rng.integers(0, 2**32, size=(rows, 32)).astype(np.int64),
                "image": rng.random((rows, 3, 32, 32), dtype=np.float32)}
    if case == "visual-search":
        return {"image": rng.random((rows, 3, 32, 32), dtype=np.float32)}
    if case == "video-recommendation":
        return {"user_id": rng.integers(0, 600, size=(rows, 1)).astype(np.int64),
                "user_features": rng.random((rows, 15), dtype=np.float32)}
    raise ValueError(case)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _nearest(index_path: Path, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index = Index.restore(str(index_path), view=True)
    ids, scores = [], []
    for query in queries:       # one query at a time: independent of any batching in the servers
        matches = index.search(query.astype(np.float32), k)
        found_ids = np.full(k, -1, np.int64)
        found_scores = np.full(k, -1.0, np.float32)
        found_ids[: len(matches)] = np.asarray(matches.keys, np.int64)
        found_scores[: len(matches)] = 1.0 - np.asarray(matches.distances, np.float32)
        ids.append(found_ids)
        scores.append(found_scores)
    return np.stack(ids), np.stack(scores)


def reference(case: str, variant: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output the KServe predictor returns, computed here with onnxruntime directly."""
    card = json.loads((variant / "model-card.json").read_text())
    if case == "ad-click-prediction":
        (p,) = _session(variant / "model.onnx").run(["click_probability"], feeds)
        ratio = card["metrics"].get("calibration", 1.0)
        q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
        ctr = 1 / (1 + np.exp(-(np.log(q / (1 - q)) - math.log(ratio))))
        return {"click_probability": p, "ctr": ctr.astype(np.float32)}
    if case == "harmful-content":
        (p,) = _session(variant / "model.onnx").run(["probabilities"], feeds)
        return {"probabilities": p, "decisions": p >= 0.5}
    if case == "visual-search":
        (embedding,) = _session(variant / "model.onnx").run(["embedding"], feeds)
        ids, scores = _nearest(variant / "catalogue.usearch", embedding, card["training"]["top_k"])
        return {"embedding": embedding, "neighbour_ids": ids, "neighbour_scores": scores}
    if case == "video-recommendation":
        (user,) = _session(variant / "retrieval.onnx").run(["user_embedding"], feeds)
        candidates, _ = _nearest(variant / "videos.usearch", user, card["training"]["candidates"])
        (scores,) = _session(variant / "model.onnx").run(["scores"], {**feeds, "candidate_ids": candidates})
        order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        return {"candidate_ids": candidates, "scores": scores,
                "ranked_ids": np.take_along_axis(candidates, order, axis=1),
                "ranked_scores": np.take_along_axis(scores, order, axis=1)}
    raise ValueError(case)


def infer_inputs(module, feeds: dict[str, np.ndarray], binary: bool = True) -> list:
    """tritonclient InferInputs (module: tritonclient.http or tritonclient.grpc)."""
    out = []
    for name, array in feeds.items():
        tensor = module.InferInput(name, list(array.shape), DATATYPES[array.dtype])
        if module.__name__.endswith("http"):
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


def client(module, url: str):
    return module.InferenceServerClient(url, network_timeout=60.0) if module.__name__.endswith("http") \
        else module.InferenceServerClient(url)
