"""What every case study hands the build pipeline: trained graphs, an evaluator, Triton wiring.

The pipeline (mlsd_predictors.build) is generic over this contract: it exports each `Graph` to ONNX,
makes the fp32/fp16/int8 variants, and calls `evaluate` with onnxruntime runners for one variant at
a time, so every metric in a model card is measured on what is actually served.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import numpy as np
import torch

from mlsd_contract import Precision

Quantization = Literal["dynamic", "static"]
Feeds = dict[str, np.ndarray]
EpochCallback = Callable[[str, int, int, float], None]
"""(stage, epoch, epochs, mean loss) after each training epoch."""


class Runner(Protocol):
    """Runs one exported graph (an onnxruntime session in the pipeline)."""

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Graph:
    """One torch module the pipeline exports as `file` (the primary graph is `model.onnx`)."""

    role: str
    file: str
    module: torch.nn.Module
    example_inputs: Feeds
    """Held-out rows (>= 64) in input order: used to export, check parity and time batches."""
    output_names: tuple[str, ...]
    quantization: Quantization
    calibration: tuple[Feeds, ...] = ()
    """Training-distribution batches for static quantization (empty for dynamic)."""
    variable_axes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Dynamic axes besides the batch axis (0), per input/output name."""


@dataclass(frozen=True)
class Artifact:
    """An auxiliary file a variant needs at serving time (an ANN index, a catalogue)."""

    name: str
    write: Callable[[Path], None]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    reference: dict[str, dict] = field(default_factory=dict)
    """Histograms of outputs/inputs on held-out data, keyed "output:<name>" / "input:<name>"."""
    artifacts: list[Artifact] = field(default_factory=list)
    primary_on: Callable[[np.ndarray], float] | None = None
    """The primary metric over a resample of the held-out examples (an index array into them), so the
    quality gate can bound the drop vs fp32 by a paired bootstrap."""
    examples: int = 0
    """How many held-out examples `primary_on` indexes (queries, users, posts, impressions)."""


@dataclass(frozen=True)
class TritonStep:
    """One model of a Triton repository; `kind` decides how it is served.

    onnx: a plain ONNX graph (platform onnxruntime_onnx).
    ann: a Python-backend model running its ONNX graph then an ANN search over `index`.
    ensemble: wires other steps; `steps` maps each composing model to {its tensor: ensemble tensor}.
    """

    name: str
    kind: Literal["onnx", "ann", "ensemble"]
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    """(name, datatype, dims without the batch axis) per tensor, datatype as in KServe (FP32, INT64)."""
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    graph_file: str | None = None
    index_file: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    steps: tuple[tuple[str, Mapping[str, str], Mapping[str, str]], ...] = ()
    """For ensembles: (model name, input map model->ensemble, output map model->ensemble)."""


class CaseStudy(abc.ABC):
    """A case study: synthetic data with a known structure, torch models, task metrics."""

    name: ClassVar[str]
    primary_metric: ClassVar[str]
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    summary: ClassVar[str]

    def __init__(self, *, small: bool, seed: int) -> None:
        self.small = small
        self.seed = seed

    @abc.abstractmethod
    def train(self, on_epoch: EpochCallback) -> None:
        """Generates the data and trains the models (seeded: same seed, same weights)."""

    @abc.abstractmethod
    def graphs(self) -> list[Graph]:
        """The graphs to export; the first has role "model" and file "model.onnx"."""

    @abc.abstractmethod
    def evaluate(self, runners: Mapping[str, Runner], precision: Precision) -> Evaluation:
        """Task metrics of one variant on the held-out data, using its runners (keyed by role)."""

    @abc.abstractmethod
    def baseline_metrics(self) -> dict[str, float]:
        """Trivial baselines on the same held-out data (`<metric>` keys comparable to evaluate's)."""

    @abc.abstractmethod
    def training_config(self) -> dict:
        """Sizes and hyper-parameters, recorded in the card."""

    @abc.abstractmethod
    def triton_steps(self) -> list[TritonStep]:
        """Triton models for this case; the one named after the case study is the entry point."""

    def labels(self) -> list[str] | None:
        """Names of the primary output's columns where they have a meaning (harm classes)."""
        return None
