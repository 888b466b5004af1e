"""Video recommendation: user tower (ONNX) -> ANN over video embeddings (candidates) -> ranking
model (ONNX) -> the candidates re-ordered by predicted watch probability.

`candidate_ids`/`scores` are what the Triton ensemble returns (retrieval order); `ranked_ids` /
`ranked_scores` are the top 10 by score, the list a client shows.
"""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from ._ann_lookup import search
from ._model import CaseStudyModel
from ._signature import TensorSpec

RETRIEVAL, RANKING, INDEX = "retrieval.onnx", "model.onnx", "videos.usearch"
RANKED = 10
LANGUAGES, DURATIONS = 3, 3     # user_features layout (casestudies/_video_recommendation.py)


class VideoRecommendationModel(CaseStudyModel):
    case_study = "video-recommendation"
    request_graph = "retrieval"
    input_bounds = {"user_id": (0, None)}

    def setup(self) -> None:
        self.user_tower = self.session(RETRIEVAL)
        self.ranker = self.session(RANKING)
        self.index = Index.restore(str(self.model_dir / INDEX), view=True)
        self.candidates = int(self.card.training.get("candidates", 50))
        k, ranked = self.candidates, min(RANKED, self.candidates)
        self.outputs = (TensorSpec("candidate_ids", "INT64", (k,)), TensorSpec("scores", "FP32", (k,)),
                        TensorSpec("ranked_ids", "INT64", (ranked,)), TensorSpec("ranked_scores", "FP32", (ranked,)))

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        user = {"user_id": feeds["user_id"], "user_features": feeds["user_features"]}
        (embedding,) = self.user_tower.run(["user_embedding"], user)
        candidate_ids, _ = search(self.index, embedding, self.candidates)
        (scores,) = self.ranker.run(["scores"], {**user, "candidate_ids": candidate_ids})
        order = np.argsort(-scores, axis=1, kind="stable")[:, :RANKED]
        return {"candidate_ids": candidate_ids, "scores": scores,
                "ranked_ids": np.take_along_axis(candidate_ids, order, axis=1),
                "ranked_scores": np.take_along_axis(scores, order, axis=1)}

    def scores(self, results):
        return [("top_score", results["ranked_scores"][:, 0])]

    def drift_values(self, feeds, results):
        # user_features: one-hot language (3), preferred-duration mix (3), then activity (casestudies).
        features = feeds["user_features"]
        values = {f"input:language_{k}": features[:, k] for k in range(LANGUAGES)}
        values["input:activity"] = features[:, LANGUAGES + DURATIONS]
        values["output:score"] = results["scores"]      # every retrieved candidate's score, as in the card
        return values
