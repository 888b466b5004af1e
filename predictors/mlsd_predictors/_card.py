"""Model cards: one JSON per variant (`kserve/<precision>/model-card.json`) and a summary per version.

JSON keys are camelCase (like the Kubernetes objects that reference them); Python attributes are
snake_case. Torch-free so the operator and servers can read cards without the training stack.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from mlsd_contract import CARD_FILE, Precision

from ._errors import CardError, NotServableError

DEFAULT_MAX_RELATIVE_DROP = 0.01
"""A variant whose primary metric is more than 1% (relative) worse than fp32 is not servable."""


class _Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class TensorSpec(_Schema):
    name: str
    datatype: str = Field(description="KServe/Triton datatype string: FP32, FP16, INT64, ...")
    shape: list[int] = Field(description="-1 for the batch axis and any other variable axis")


class Signature(_Schema):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Latency(_Schema):
    """onnxruntime CPU latency: median over `repeats` runs after warm-up."""

    batch1: float
    batch64: float
    threads: int
    repeats: int
    load_average: float = Field(description="host 1-minute load average when measured (context for the figures)")


class GraphCard(_Schema):
    """One ONNX file of the variant (video recommendation has a ranking and a retrieval graph)."""

    role: str
    file: str
    signature: Signature
    size_bytes: int
    parity_max_abs_error: float = Field(description="max |onnxruntime - torch fp32| over held-out rows")
    parity_mean_abs_error: float = Field(description="mean |onnxruntime - torch fp32| over the same rows")
    latency_ms: Latency
    quantization: str


class Histogram(_Schema):
    """Reference distribution on held-out data; drift monitoring compares live traffic with it."""

    bin_edges: list[float]
    fractions: list[float]
    transform: str | None = Field(None, description="applied before binning, e.g. log1p")


class MeasuredOn(_Schema):
    """The machine the card's figures were measured on (onnxruntime picks CPU kernels by instruction set)."""

    cpu: str
    machine: str
    isa: list[str] = Field(description="CPU flags that select onnxruntime's kernels (avx2, avx512_vnni, amx_int8...)")
    onnxruntime: str
    torch: str | None = None


class QualityGate(_Schema):
    """The servable decision on the primary metric, with the uncertainty of a finite held-out set."""

    metric: str
    examples: int = Field(description="held-out examples (queries, users, rows) the metric is measured over")
    drop: float = Field(description="relative drop vs fp32 on the whole held-out set, positive = worse")
    drop_upper: float = Field(description="one-sided 95% upper bound of the drop: paired bootstrap, the same "
                                          "resampled examples scored by fp32 and by this variant")
    resamples: int
    threshold: float = Field(description="servable only when drop_upper <= threshold")


class SelfCheck(_Schema):
    """Golden rows the build ran through this variant; a predictor re-runs them at load time."""

    file: str = Field(description="npz beside the graphs: '<graph>|in|<input>' and '<graph>|out|<output>' arrays")
    rows: int
    tolerance: dict[str, float] = Field(description="graph file -> largest |output - recorded output| allowed: "
                                                    "half the variant's own error vs torch fp32 on these rows, "
                                                    "at least 1e-4 of the output's scale")


class ModelCard(_Schema):
    schema_version: Literal[1] = 1
    case_study: str
    version: int
    precision: Precision
    summary: str
    signature: Signature = Field(description="of model.onnx, the primary graph")
    labels: list[str] | None = Field(None, description="meaning of the primary output's columns")
    graphs: list[GraphCard]
    primary_metric: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, float] = Field(description="trivial baselines on the same held-out data")
    relative_drop: dict[str, float] = Field(description="vs fp32, positive = worse, per metric")
    parity_max_abs_error: float
    latency_ms: Latency = Field(description="of model.onnx")
    size_bytes: int = Field(description="all files of the variant except this card")
    files: dict[str, int] = Field(description="file name -> bytes")
    training: dict[str, Any]
    data_seed: int
    small: bool
    build_time: datetime
    build_seconds: float
    max_relative_drop: float
    servable: bool
    not_servable_reason: str | None = None
    reference_distribution: dict[str, Histogram] = Field(description='"output:<name>" / "input:<name>" -> histogram')
    measured_on: MeasuredOn | None = Field(None, description="absent in cards built before it was recorded")
    gate: QualityGate | None = Field(None, description="absent in cards built before it was recorded")
    self_check: SelfCheck | None = Field(None, description="absent in cards built before it was recorded")


class VariantSummary(_Schema):
    precision: Precision
    servable: bool
    not_servable_reason: str | None
    metrics: dict[str, float]
    relative_drop: dict[str, float]
    parity_max_abs_error: float
    latency_ms: Latency
    size_bytes: int
    paths: dict[str, str] = Field(description="layout name -> directory relative to the version root")


class RepositoryCard(_Schema):
    """`<out>/<case>/<V>/model-card.json`: every variant of one version at a glance."""

    schema_version: Literal[1] = 1
    case_study: str
    version: int
    summary: str
    primary_metric: str
    baseline_metrics: dict[str, float]
    max_relative_drop: float
    data_seed: int
    small: bool
    training: dict[str, Any]
    build_time: datetime
    build_seconds: float
    variants: list[VariantSummary]


def _read(path: Path, schema: type[_Schema]) -> Any:
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    try:
        return schema.model_validate_json(path.read_bytes())
    except FileNotFoundError as error:
        raise CardError(f"no model card at {path}") from error
    except ValidationError as error:
        raise CardError(f"{path} is not a valid {schema.__name__}: {error}") from error


def load_card(path: Path | str) -> ModelCard:
    """Reads a variant's card from its JSON file or from the variant directory holding it."""
    return _read(Path(path), ModelCard)


def load_repository_card(path: Path | str) -> RepositoryCard:
    """Reads the summary card from its JSON file or from the version root `<out>/<case>/<V>`."""
    return _read(Path(path), RepositoryCard)


def dump_card(card: ModelCard | RepositoryCard, path: Path) -> None:
    Path(path).write_text(card.model_dump_json(by_alias=True, indent=2) + "\n")


def check_servable(card: ModelCard) -> None:
    """Raises NotServableError (naming variant, metric and drop) unless the card says servable."""
    if card.servable:
        return
    metric = card.primary_metric
    raise NotServableError(
        case_study=card.case_study,
        version=card.version,
        precision=card.precision,
        metric=metric,
        drop=card.relative_drop.get(metric, float("nan")),
        threshold=card.max_relative_drop,
    )
