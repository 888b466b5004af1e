"""Harmful content: fused text + image -> one probability per harm class (multi-task heads), plus
a decision per class: probability >= the class threshold (default 0.5, or the card's
`training.decision_thresholds` where the build recorded them)."""

from __future__ import annotations

import numpy as np

from ._model import CaseStudyModel
from ._signature import TensorSpec

GRAPH = "model.onnx"
DEFAULT_THRESHOLD = 0.5


class HarmfulContentModel(CaseStudyModel):
    case_study = "harmful-content"
    input_bounds = {"token_ids": (0, None)}

    def setup(self) -> None:
        self.classifier = self.session(GRAPH)
        self.classes = list(self.card.labels or [])
        thresholds = dict(self.card.training.get("decision_thresholds") or {})
        self.thresholds = np.array([float(thresholds.get(c, DEFAULT_THRESHOLD)) for c in self.classes], np.float32)
        n = len(self.classes)
        self.outputs = (TensorSpec("probabilities", "FP32", (n,)), TensorSpec("decisions", "BOOL", (n,)))

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (probabilities,) = self.classifier.run(["probabilities"], feeds)
        return {"probabilities": probabilities, "decisions": probabilities >= self.thresholds}

    def scores(self, results):
        return [(name, results["probabilities"][:, i]) for i, name in enumerate(self.classes)]

    def drift_values(self, feeds, results):
        values = {"input:token_count": (feeds["token_ids"] != 0).sum(axis=1),
                  "input:image_mean": feeds["image"].mean(axis=(1, 2, 3))}
        for i, name in enumerate(self.classes):
            values[f"output:probability_{name}"] = results["probabilities"][:, i]
        return values
