"""Names and paths fixed with the rest of the team (operator, servers): torch-free on purpose."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

CASE_STUDIES: tuple[str, ...] = ("visual-search", "harmful-content", "video-recommendation", "ad-click-prediction")
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
DEFAULT_MAX_RELATIVE_DROP = 0.01
"""A variant whose primary metric is more than 1% (relative) worse than fp32 is not servable."""

CARD_FILE = "model-card.json"
KSERVE, TRITON, TRITON_PYTHON = "kserve", "triton", "triton-python"


def repository_root(out: Path, case_study: str, version: int) -> Path:
    """`<out>/<case>/<V>`: what a ModelDeployment's storageUri points at."""
    return Path(out) / case_study / str(version)


def kserve_dir(root: Path, precision: str) -> Path:
    """model.onnx, model-card.json and auxiliary files (ANN index, catalogue) of one variant."""
    return Path(root) / KSERVE / precision


def triton_dir(root: Path, precision: str) -> Path:
    """A Triton model repository (NGC image: onnxruntime backend for plain ONNX models)."""
    return Path(root) / TRITON / precision


def triton_python_dir(root: Path, precision: str) -> Path:
    """The same repository with every model on the Python backend (tritonserver from nvidia-pytriton)."""
    return Path(root) / TRITON_PYTHON / precision
