"""Predictor servers: KServe Model subclasses per case study, a tritonserver launcher, shared
input checks, typed errors and metrics. Heavy modules (kserve, onnxruntime) load on first use, so
importing the pure parts never pulls in KServe's protobufs (they clash with tritonclient.grpc's)."""

from __future__ import annotations

import importlib
from typing import Any

from ._errors import (
    ERRORS, BatchTooLarge, MalformedRequest, MissingInput, NonFiniteValue, PayloadTooLarge, ServingError,
    UnknownInput, ValueOutOfRange, VariantNotServable, WrongDatatype, WrongShape,
)
from ._metrics import NAMES as METRIC_NAMES
from ._metrics import SCORE_BUCKETS
from ._registry import CASE_STUDIES
from ._signature import Signature, TensorSpec, check_inputs

_LAZY = {
    "CaseStudyModel": "._model",
    "PredictorServer": "._server",
    "TritonServer": "._triton",
    "TritonNotFound": "._triton",
    "find_tritonserver": "._triton",
    "model_class": "._registry",
}

__all__ = [
    "CASE_STUDIES", "ERRORS", "METRIC_NAMES", "SCORE_BUCKETS", "BatchTooLarge", "MalformedRequest", "MissingInput",
    "NonFiniteValue", "PayloadTooLarge", "ServingError", "Signature", "TensorSpec", "UnknownInput",
    "ValueOutOfRange", "VariantNotServable", "WrongDatatype", "WrongShape", "check_inputs", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
