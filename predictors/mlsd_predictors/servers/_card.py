"""What a predictor takes from a variant's model card (`model-card.json`, written by `mlsd build`).

Read leniently on purpose: the predictor needs the signature, the servable gate and a few values
(labels, calibration, top-k), and must keep serving models built by an older or newer `mlsd build`
whose cards gained or lost descriptive fields (latency, sizes, ...). The full schema and its strict
validation are `mlsd_predictors.ModelCard`; only `schemaVersion` must match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from mlsd_predictors import CARD_FILE, CardError

from ._errors import VariantNotServable
from ._signature import Signature, TensorSpec

DEFAULT_MAX_BATCH_SIZE = 64
"""Same as the Triton configs `mlsd build` writes, so both runtimes refuse the same batches."""
SCHEMA_VERSION = 1


class _Lenient(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class _Tensor(_Lenient):
    name: str
    datatype: str
    shape: list[int]


class _Signature(_Lenient):
    inputs: list[_Tensor]
    outputs: list[_Tensor]


class _Graph(_Lenient):
    role: str
    file: str
    signature: _Signature
    latency_ms: dict[str, float] = {}


class _SelfCheck(_Lenient):
    file: str
    rows: int
    tolerance: dict[str, float]


class ServingCard(_Lenient):
    schema_version: int
    case_study: str
    version: int | str
    precision: str
    signature: _Signature
    graphs: list[_Graph] = []
    labels: list[str] | None = None
    metrics: dict[str, float] = {}
    training: dict[str, Any] = {}
    primary_metric: str = ""
    relative_drop: dict[str, float] = {}
    max_relative_drop: float | None = None
    servable: bool
    not_servable_reason: str | None = None
    reference_distribution: dict[str, dict[str, Any]] = {}
    measured_on: dict[str, Any] | None = None
    self_check: _SelfCheck | None = None


def load_servable(model_dir: Path) -> ServingCard:
    """The card in `model_dir`; VariantNotServable (naming variant, metric and drop) if gated."""
    path = Path(model_dir) / CARD_FILE
    try:
        card = ServingCard.model_validate_json(path.read_bytes())
    except FileNotFoundError as err:
        raise CardError(f"no model card at {path}: is this a `mlsd build` variant "
                        "(<out>/<case>/<V>/kserve/<precision>)?") from err
    except ValidationError as err:
        raise CardError(f"{path} is not a model card this predictor can read: {err}") from err
    if card.schema_version != SCHEMA_VERSION:
        raise CardError(f"{path}: card schema version {card.schema_version}, this predictor reads {SCHEMA_VERSION}")
    if not card.servable:
        metric = card.primary_metric
        drop = card.relative_drop.get(metric)
        detail = card.not_servable_reason or (f"{metric} is {drop:.2%} worse than fp32" if drop is not None else "")
        raise VariantNotServable(f"{card.case_study} v{card.version} {card.precision} is not servable: {detail}; "
                                 "serve another precision or rebuild")
    return card


INLINE_BUDGET_MS = 1.0


def inline_compute(card: ServingCard) -> bool:
    """Whether a full batch through every graph takes under INLINE_BUDGET_MS (per the card's
    onnxruntime timings): then running it on the event loop beats a thread hand-off."""
    if not card.graphs or any("batch64" not in g.latency_ms for g in card.graphs):
        return False
    return sum(g.latency_ms["batch64"] for g in card.graphs) <= INLINE_BUDGET_MS


def _dims(shape: list[int]) -> tuple[int, ...]:
    """Dims without the leading batch axis (-1 in the card)."""
    return tuple(int(d) for d in shape[1:])


def request_signature(card: ServingCard, graph_role: str, outputs: tuple[TensorSpec, ...],
                      max_batch_size: int | None) -> Signature:
    """Inputs of the graph that receives the request, with the outputs the predictor returns."""
    graph = next((g for g in card.graphs if g.role == graph_role), None)
    signature = graph.signature if graph is not None else card.signature
    inputs = tuple(TensorSpec(t.name, t.datatype, _dims(t.shape)) for t in signature.inputs)
    return Signature(inputs, outputs, max_batch_size or DEFAULT_MAX_BATCH_SIZE)
