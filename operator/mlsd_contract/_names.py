"""Names both packages agree on: case studies, runtimes, precisions and where a variant lives.

The operator renders pods that read `<storageUri>/<layout>/<precision>`; `mlsd build` writes that
tree and the predictor servers read it. This module is the one place the spelling lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal


class CaseStudy(StrEnum):
    VISUAL_SEARCH = "visual-search"
    HARMFUL_CONTENT = "harmful-content"
    VIDEO_RECOMMENDATION = "video-recommendation"
    AD_CLICK_PREDICTION = "ad-click-prediction"


class Runtime(StrEnum):
    KSERVE = "kserve"
    TRITON = "triton"


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


CASE_STUDIES: tuple[str, ...] = tuple(c.value for c in CaseStudy)


@dataclass(frozen=True)
class TritonScore:
    """Which output of which model in a case study's Triton repository carries the score the canary
    analysis compares across versions (the quantity its KServe predictor observes)."""

    model: str
    output: str
    select: Literal["all", "max"] = "all"
    """all: every value is a score; max: each row's largest (a ranking's best candidate)."""
    labels: tuple[str, ...] = ()
    """One score series per column, named so (multi-label heads); empty: one series named after the output."""


@dataclass(frozen=True)
class CaseStudyTraits:
    """What the operator and the API need to know of a case study (the model itself lives in
    mlsd_predictors.casestudies, its KServe server in mlsd_predictors.servers, both found by name)."""

    prefers: Literal["cpu", "gpu"]
    """Where `placement.accelerator: auto` puts it..."""
    why: str
    """...and why (written on every workload as mlsd.io/placement-reason)."""
    cpu: str
    memory: str
    """Requests per replica (memory is the limit too), sized from the models `mlsd build` produces."""
    content_only: bool
    """Answers depend on the content alone (no per-user context), so a prediction cache is safe."""
    triton_score: TritonScore | None = None
    """None: its Triton models export no score histogram (the analysis then compares no drift)."""


TRAITS: dict[CaseStudy, CaseStudyTraits] = {
    CaseStudy.VISUAL_SEARCH: CaseStudyTraits(
        "gpu", "a CNN image encoder is compute-bound and batches well on a GPU", "1", "2Gi", content_only=True),
    CaseStudy.HARMFUL_CONTENT: CaseStudyTraits(
        "gpu", "the multimodal fusion trunk is compute-bound and batches well on a GPU", "1", "2Gi",
        content_only=True,
        triton_score=TritonScore("harmful-content", "probabilities", labels=("violence", "nudity", "hate_speech", "spam"))),
    CaseStudy.VIDEO_RECOMMENDATION: CaseStudyTraits(
        "cpu", "two-tower lookups and ANN search are memory-bound; the small ranking model does not fill a GPU",
        "1", "3Gi", content_only=False,
        triton_score=TritonScore("video-recommendation-ranking", "scores", select="max")),
    CaseStudy.AD_CLICK_PREDICTION: CaseStudyTraits(
        "cpu", "hashed sparse-embedding lookups and a small cross network are latency-bound at small batches; "
               "a GPU would idle", "500m", "1Gi", content_only=False,
        triton_score=TritonScore("ad-click-prediction", "click_probability")),
}
PRECISIONS: tuple[Precision, ...] = tuple(Precision)

# Layouts of one version's repository: the KServe layout (ONNX graphs + aux files + card), a Triton
# repository for the onnxruntime backend, and the same repository on the Python backend.
KSERVE_LAYOUT, TRITON_LAYOUT, TRITON_PYTHON_LAYOUT = "kserve", "triton", "triton-python"
CARD_FILE = "model-card.json"


def variant_uri(storage_uri: str, layout: str, precision: str) -> str:
    """`<storageUri>/<layout>/<precision>`: one precision variant inside a version's repository."""
    return f"{storage_uri.rstrip('/')}/{layout}/{Precision(precision).value}"


def repository_root(out: Path, case_study: str, version: int | str) -> Path:
    """`<out>/<case>/<V>`: what a ModelDeployment's storageUri points at."""
    return Path(out) / case_study / str(version)


def variant_dir(root: Path, layout: str, precision: str) -> Path:
    """`variant_uri` on a local repository root."""
    return Path(variant_uri(str(root), layout, precision))


def kserve_dir(root: Path, precision: str) -> Path:
    """model.onnx, model-card.json and auxiliary files (ANN index, catalogue) of one variant."""
    return variant_dir(root, KSERVE_LAYOUT, precision)


def triton_dir(root: Path, precision: str) -> Path:
    """A Triton model repository (NGC image: onnxruntime backend for plain ONNX models)."""
    return variant_dir(root, TRITON_LAYOUT, precision)


def triton_python_dir(root: Path, precision: str) -> Path:
    """The same repository with every model on the Python backend (tritonserver from nvidia-pytriton)."""
    return variant_dir(root, TRITON_PYTHON_LAYOUT, precision)
