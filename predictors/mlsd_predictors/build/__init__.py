"""Build pipeline behind `mlsd build` (needs the `models` extra: torch, onnx, onnxruntime, usearch)."""

from ._pipeline import BuildOptions, Reporter, SilentReporter, build_all, build_case_study, relative_drop
from ._triton import LAYOUTS, Serving, render_config

__all__ = [
    "LAYOUTS",
    "BuildOptions",
    "Reporter",
    "Serving",
    "SilentReporter",
    "build_all",
    "build_case_study",
    "relative_drop",
    "render_config",
]
