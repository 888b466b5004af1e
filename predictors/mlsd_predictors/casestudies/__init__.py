"""The four case studies: generators with a known structure, torch models, task metrics."""

from __future__ import annotations

import importlib

from mlsd_contract import CASE_STUDIES

from ._ad_click_prediction import AdClickPrediction
from ._base import Artifact, CaseStudy, Evaluation, Graph, Runner, TritonStep
from ._harmful_content import HARM_CLASSES, MAX_TOKENS, HarmfulContent, tokenize
from ._video_recommendation import VideoRecommendation
from ._visual_search import VisualSearch



def _discover(name: str) -> type[CaseStudy]:
    """By convention: `_<name with underscores>.py` here defines the CaseStudy whose `name` is `name`."""
    module = importlib.import_module(f"._{name.replace('-', '_')}", __package__)
    found = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, CaseStudy)
             and obj.__module__ == module.__name__ and getattr(obj, "name", None) == name]
    if len(found) != 1:
        raise LookupError(f"{module.__name__} must define one CaseStudy named {name!r}, found {len(found)}")
    return found[0]


REGISTRY: dict[str, type[CaseStudy]] = {name: _discover(name) for name in CASE_STUDIES}
"""Every case study the contract names (mlsd_contract.CaseStudy)."""


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
