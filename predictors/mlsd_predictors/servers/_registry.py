"""Case study name -> its KServe Model class (imported lazily: each pulls in kserve and onnxruntime)."""

from __future__ import annotations

import importlib

MODEL_CLASSES = {
    "visual-search": ("._visual_search", "VisualSearchModel"),
    "harmful-content": ("._harmful_content", "HarmfulContentModel"),
    "video-recommendation": ("._video_recommendation", "VideoRecommendationModel"),
    "ad-click-prediction": ("._ad_click_prediction", "AdClickPredictionModel"),
}
CASE_STUDIES = tuple(MODEL_CLASSES)


def model_class(case_study: str):
    try:
        module, name = MODEL_CLASSES[case_study]
    except KeyError:
        raise ValueError(f"unknown case study {case_study!r} (one of {', '.join(CASE_STUDIES)})") from None
    return getattr(importlib.import_module(module, __package__), name)
