"""mlsd_predictors: the case-study models (`mlsd build`) and their model cards.

This top level is torch-free: the operator and servers import cards and names from here. Training
and export live in `mlsd_predictors.build` and `mlsd_predictors.casestudies` (need the `models` extra).
"""

from mlsd_contract import (
    CARD_FILE,
    CASE_STUDIES,
    PRECISIONS,
    Precision,
    kserve_dir,
    repository_root,
    triton_dir,
    triton_python_dir,
)

from ._card import (
    DEFAULT_MAX_RELATIVE_DROP,
    GraphCard,
    Histogram,
    Latency,
    ModelCard,
    RepositoryCard,
    Signature,
    TensorSpec,
    VariantSummary,
    check_servable,
    load_card,
    load_repository_card,
)
from ._report import figures_table, quality_table
from ._errors import CardError, NotServableError, ParityError, PredictorError, RepositoryExistsError

__all__ = [
    "CARD_FILE",
    "CASE_STUDIES",
    "DEFAULT_MAX_RELATIVE_DROP",
    "PRECISIONS",
    "CardError",
    "GraphCard",
    "Histogram",
    "Latency",
    "ModelCard",
    "NotServableError",
    "ParityError",
    "Precision",
    "PredictorError",
    "RepositoryCard",
    "RepositoryExistsError",
    "Signature",
    "TensorSpec",
    "VariantSummary",
    "check_servable",
    "figures_table",
    "kserve_dir",
    "load_card",
    "load_repository_card",
    "quality_table",
    "repository_root",
    "triton_dir",
    "triton_python_dir",
]
