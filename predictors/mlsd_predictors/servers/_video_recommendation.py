"""Video recommendation: user tower (ONNX) -> ANN over video embeddings (candidates) -> ranking
model (ONNX) -> candidates re-ordered by predicted watch probability."""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from mlsd_predictors.casestudies._ann import ann_search

from ._model import CaseStudyModel

RETRIEVAL, RANKING, INDEX = "retrieval.onnx", "model.onnx", "videos.usearch"
RANKED = 10


class VideoRecommendationModel(CaseStudyModel):
    case_study = "video-recommendation"
    input_bounds = {"user_id": (0, None)}
    extra_outputs = (("ranked_ids", "INT64", (RANKED,)), ("ranked_scores", "FP32", (RANKED,)))

    def setup(self) -> None:
        self.user_tower = self.session(RETRIEVAL)
        self.ranker = self.session(RANKING)
        self.index = Index.restore(str(self.model_dir / INDEX), view=True)
        self.candidates = int(self.card.get("trainingConfig.candidates", "training.candidates",
                                            "config.candidates", default=50))

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        user = {"user_id": feeds["user_id"], "user_features": feeds["user_features"]}
        embedding = self.user_tower.run(["user_embedding"], user)[0]
        candidate_ids, _ = ann_search(self.index, embedding, self.candidates)
        scores = self.ranker.run(["scores"], {**user, "candidate_ids": candidate_ids})[0]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :RANKED]
        return {"candidate_ids": candidate_ids, "scores": scores,
                "ranked_ids": np.take_along_axis(candidate_ids, order, axis=1),
                "ranked_scores": np.take_along_axis(scores, order, axis=1)}

    def scores(self, results):
        return [("top_score", results["ranked_scores"][:, 0])]
