"""The catalogue index every layer builds the same way (torch-free: `mlsd build`, the batch
runner's rebuilt catalogues and the tests share it). See casestudies/_ann.py for the choice of usearch."""

from __future__ import annotations

import numpy as np
from usearch.index import Index

# HNSW settings: M=16 links per node, efConstruction=128, efSearch=64 (usearch's names).
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 64
INDEX_DTYPE = {"fp32": "f32", "fp16": "f16", "int8": "i8"}


def build_index(ids: np.ndarray, embeddings: np.ndarray, precision: str) -> Index:
    """A cosine HNSW index keyed by catalogue id; vectors stored at the variant's precision."""
    index = Index(
        ndim=embeddings.shape[1],
        metric="cos",
        dtype=INDEX_DTYPE[precision],
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )
    # Single-threaded inserts keep the graph, and so the results, reproducible.
    index.add(ids.astype(np.uint64), np.ascontiguousarray(embeddings, dtype=np.float32), threads=1)
    return index
