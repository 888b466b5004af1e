"""The four case studies: generators with a known structure, torch models, task metrics."""

from __future__ import annotations

from ._ad_click_prediction import AdClickPrediction
from ._base import Artifact, CaseStudy, Evaluation, Graph, Runner, TritonStep
from ._harmful_content import HARM_CLASSES, MAX_TOKENS, HarmfulContent, tokenize
from ._video_recommendation import VideoRecommendation
from ._visual_search import VisualSearch

REGISTRY: dict[str, type[CaseStudy]] = {
    cls.name: cls for cls in (VisualSearch, HarmfulContent, VideoRecommendation, AdClickPrediction)
}


def case_study(name: str, *, small: bool = False, seed: int = 0) -> CaseStudy:
    """A fresh (untrained) case study by its contract name."""
    try:
        return REGISTRY[name](small=small, seed=seed)
    except KeyError:
        raise ValueError(f"unknown case study {name!r}; choose one of {', '.join(REGISTRY)}") from None


__all__ = [
    "HARM_CLASSES",
    "MAX_TOKENS",
    "REGISTRY",
    "AdClickPrediction",
    "Artifact",
    "CaseStudy",
    "Evaluation",
    "Graph",
    "HarmfulContent",
    "Runner",
    "TritonStep",
    "VideoRecommendation",
    "VisualSearch",
    "case_study",
    "tokenize",
]
