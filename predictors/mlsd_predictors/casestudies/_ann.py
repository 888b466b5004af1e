"""Approximate nearest-neighbour search over a catalogue with usearch (HNSW), and the exact reference.

usearch because: one small wheel with no BLAS/OpenMP stack, the index is a single file that can be
memory-mapped at serving time (`Index.restore(path, view=True)`), keys are our catalogue ids (no
separate id map as with faiss' IndexIDMap), and the stored scalar type (f32/f16/i8) follows the
model variant (int8 vectors take a quarter of the bytes; the file, HNSW links included, about half).
"""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from mlsd_predictors._ann_index import CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH, INDEX_DTYPE, build_index  # noqa: F401


def ann_search(index: Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids and cosine similarities (1 - distance), best first; id -1 where fewer than k exist."""
    matches = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, threads=1)
    found = np.arange(k)[None, :] < np.asarray(matches.counts)[:, None]
    ids = np.where(found, matches.keys.astype(np.int64), -1)
    return ids, np.where(found, 1.0 - matches.distances, -1.0).astype(np.float32)


def exact_search(ids: np.ndarray, embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids by cosine similarity (brute force)."""
    catalogue = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    similarity = q @ catalogue.T
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(similarity, top, axis=1).argsort(axis=1)[:, ::-1]
    return ids[np.take_along_axis(top, order, axis=1)]


def ann_recall(ann_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Fraction of the exact top-k that the ANN search returned (recall@k of ANN vs exact)."""
    k = exact_ids.shape[1]
    return float(np.mean([len(np.intersect1d(a, e)) / k for a, e in zip(ann_ids, exact_ids, strict=True)]))
