"""What a predictor takes from a variant's model card (`mlsd_predictors.ModelCard`, written by
`mlsd build`): the request signature of one of its graphs, and the servable gate."""

from __future__ import annotations

from pathlib import Path

from mlsd_predictors import ModelCard, check_servable, load_card

from ._errors import VariantNotServable
from ._signature import Signature, TensorSpec

DEFAULT_MAX_BATCH_SIZE = 64
"""Same as the Triton configs `mlsd build` writes, so both runtimes refuse the same batches."""


def _dims(shape: list[int]) -> tuple[int, ...]:
    """Dims without the leading batch axis (-1 in the card)."""
    return tuple(int(d) for d in shape[1:])


def load_servable(model_dir: Path) -> ModelCard:
    """The card in `model_dir`; VariantNotServable (naming variant, metric and drop) if gated."""
    card = load_card(Path(model_dir))
    try:
        check_servable(card)
    except Exception as err:   # NotServableError
        raise VariantNotServable(str(err)) from err
    return card


def request_signature(card: ModelCard, graph_role: str, outputs: tuple[TensorSpec, ...],
                      max_batch_size: int | None) -> Signature:
    """Inputs of the graph that receives the request, with the outputs the predictor returns."""
    graph = next((g for g in card.graphs if g.role == graph_role), None)
    signature = graph.signature if graph is not None else card.signature
    inputs = tuple(TensorSpec(t.name, t.datatype, _dims(t.shape)) for t in signature.inputs)
    return Signature(inputs, outputs, max_batch_size or DEFAULT_MAX_BATCH_SIZE)
