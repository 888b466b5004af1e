"""Harmful content: fused text + image -> one probability per harm class (multi-task heads), plus
a decision per class from the card's per-class thresholds (default 0.5)."""

from __future__ import annotations

import numpy as np

from mlsd_predictors.casestudies._harmful_content import HARM_CLASSES

from ._model import CaseStudyModel

GRAPH = "model.onnx"


class HarmfulContentModel(CaseStudyModel):
    case_study = "harmful-content"
    input_bounds = {"token_ids": (0, None)}
    extra_outputs = (("decisions", "BOOL", (len(HARM_CLASSES),)),)

    def setup(self) -> None:
        self.classifier = self.session(GRAPH)
        self.classes = list(self.card.get("labels", "classes", default=HARM_CLASSES))
        thresholds = self.card.get("thresholds", "decisionThresholds", default={}) or {}
        if isinstance(thresholds, list):
            thresholds = dict(zip(self.classes, thresholds, strict=True))
        self.thresholds = np.array([float(thresholds.get(c, 0.5)) for c in self.classes], dtype=np.float32)

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probabilities = self.classifier.run(["probabilities"], feeds)[0]
        return {"probabilities": probabilities, "decisions": probabilities >= self.thresholds}

    def scores(self, results):
        return [(name, results["probabilities"][:, i]) for i, name in enumerate(self.classes)]
