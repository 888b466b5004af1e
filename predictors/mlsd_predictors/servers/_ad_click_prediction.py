"""Ad click prediction: raw sparse ids + dense features -> click probability (DCN, hashing inside
the graph) -> calibrated CTR.

Calibration: the card's `calibration` metric is mean(predicted) / mean(observed clicks) on held-out
data. The served `ctr` shifts the logit by -log(ratio), which removes that global bias, keeps the
value in (0, 1) and keeps the ranking (AUC) unchanged; `click_probability` is the raw output, the
same as Triton returns.
"""

from __future__ import annotations

import math

import numpy as np

from ._model import CaseStudyModel
from ._signature import TensorSpec

GRAPH = "model.onnx"
_EPS = 1e-7


def calibrate(probability: np.ndarray, ratio: float) -> np.ndarray:
    p = np.clip(probability.astype(np.float64), _EPS, 1 - _EPS)
    logit = np.log(p / (1 - p)) - math.log(ratio)
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


class AdClickPredictionModel(CaseStudyModel):
    case_study = "ad-click-prediction"
    input_bounds = {"sparse_ids": (0, None), "dense": (0, None)}
    outputs = (TensorSpec("click_probability", "FP32", (1,)), TensorSpec("ctr", "FP32", (1,)))

    def setup(self) -> None:
        self.ranker = self.session(GRAPH)
        ratio = float(self.card.metrics.get("calibration", 1.0))
        self.ratio = ratio if math.isfinite(ratio) and ratio > 0 else 1.0

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probability = self.ranker.run(["click_probability"], feeds)[0]
        return {"click_probability": probability, "ctr": calibrate(probability, self.ratio)}

    def scores(self, results):
        return [("click_probability", results["click_probability"][:, 0])]

    def drift_values(self, feeds, results):
        names = self.card.training.get("dense_features") or ()
        values = {f"input:{name}": feeds["dense"][:, i] for i, name in enumerate(names)}
        values["output:click_probability"] = results["click_probability"][:, 0]
        return values
