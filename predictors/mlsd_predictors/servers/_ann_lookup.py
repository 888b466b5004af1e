"""Nearest neighbours as the Triton `ann_model.py` of `mlsd build` returns them, so both runtimes
answer the same: ids -1 (score -1) where the index holds fewer than k items."""

from __future__ import annotations

import numpy as np
from usearch.index import Index


def search(index: Index, embedding: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    queries = np.ascontiguousarray(embedding, dtype=np.float32).reshape(len(embedding), -1)
    matches = index.search(queries, k)
    # usearch answers one query with `Matches` (1-D keys, no `counts`), several with `BatchMatches`.
    counts = np.asarray(getattr(matches, "counts", [len(matches)])).reshape(-1, 1)
    keys = np.asarray(matches.keys).reshape(len(queries), -1).astype(np.int64)
    distances = np.asarray(matches.distances).reshape(len(queries), -1)
    found = np.arange(keys.shape[1])[None, :] < counts
    if keys.shape[1] < k:   # a single query's Matches holds only what was found
        pad = k - keys.shape[1]
        keys = np.pad(keys, ((0, 0), (0, pad)))
        distances = np.pad(distances, ((0, 0), (0, pad)))
        found = np.pad(found, ((0, 0), (0, pad)))
    return np.where(found, keys, -1), np.where(found, 1.0 - distances, -1.0).astype(np.float32)
