"""Visual search: image -> embedding (ONNX) -> nearest catalogue items (usearch HNSW index)."""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from mlsd_predictors.casestudies._ann import ann_search

from ._model import CaseStudyModel

GRAPH, INDEX = "model.onnx", "catalogue.usearch"


class VisualSearchModel(CaseStudyModel):
    case_study = "visual-search"

    def setup(self) -> None:
        self.encoder = self.session(GRAPH)
        # Memory-mapped: replicas on one node share the page cache instead of each holding a copy.
        self.index = Index.restore(str(self.model_dir / INDEX), view=True)
        self.top_k = int(self.card.get("trainingConfig.top_k", "training.top_k", "config.top_k", default=10))

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embedding = self.encoder.run(["embedding"], {"image": feeds["image"]})[0]
        ids, scores = ann_search(self.index, embedding, self.top_k)
        return {"embedding": embedding, "neighbour_ids": ids, "neighbour_scores": scores}

    def scores(self, results):
        return [("top1_similarity", results["neighbour_scores"][:, 0])]
