"""Visual search: image -> embedding (ONNX) -> nearest catalogue items (usearch HNSW index)."""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from ._ann_lookup import search
from ._model import CaseStudyModel
from ._signature import TensorSpec

GRAPH, INDEX = "model.onnx", "catalogue.usearch"


class VisualSearchModel(CaseStudyModel):
    case_study = "visual-search"

    def setup(self) -> None:
        self.encoder = self.session(GRAPH)
        # Memory-mapped: replicas on one node share the page cache instead of each holding a copy.
        self.index = Index.restore(str(self.model_dir / INDEX), view=True)
        self.top_k = int(self.card.training.get("top_k", 10))
        dim = int(self.card.training.get("embedding_dim", 64))
        self.outputs = (TensorSpec("embedding", "FP32", (dim,)), TensorSpec("neighbour_ids", "INT64", (self.top_k,)),
                        TensorSpec("neighbour_scores", "FP32", (self.top_k,)))

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (embedding,) = self.encoder.run(["embedding"], {"image": feeds["image"]})
        ids, scores = search(self.index, embedding, self.top_k)
        return {"embedding": embedding, "neighbour_ids": ids, "neighbour_scores": scores}

    def scores(self, results):
        return [("top1_similarity", results["neighbour_scores"][:, 0])]

    def drift_values(self, feeds, results):
        means = feeds["image"].mean(axis=(2, 3))       # per channel: the catalogue's colour balance
        values = {f"input:image_mean_{name}": means[:, channel] for channel, name in enumerate("rgb")}
        values["output:top1_similarity"] = results["neighbour_scores"][:, 0]
        return values
