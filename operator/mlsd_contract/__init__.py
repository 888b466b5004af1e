"""mlsd_contract: what the operator (mlsd_operator) and the predictors (mlsd_predictors) agree on.

Both packages import from here and never from each other: the ModelDeployment API (`.api`), the
names of case studies, runtimes and precisions, where a precision variant lives in a version's
repository, the Prometheus series the predictors export and the operator queries (`.metrics`),
the tracks of a deployment and their traffic (`.tracks`), and the `mlsd` command line, which
assembles each package's commands (`.cli`). It depends on pydantic only (and typer for the CLI).
"""

from ._names import (
    CARD_FILE,
    CASE_STUDIES,
    KSERVE_LAYOUT,
    PRECISIONS,
    TRAITS,
    TRITON_LAYOUT,
    TRITON_PYTHON_LAYOUT,
    CaseStudy,
    CaseStudyTraits,
    TritonScore,
    Precision,
    Runtime,
    kserve_dir,
    repository_root,
    triton_dir,
    triton_python_dir,
    variant_dir,
    variant_uri,
)

__all__ = [
    "CARD_FILE", "CASE_STUDIES", "KSERVE_LAYOUT", "PRECISIONS", "TRAITS", "TRITON_LAYOUT", "TRITON_PYTHON_LAYOUT",
    "CaseStudy", "CaseStudyTraits", "TritonScore", "Precision", "Runtime", "kserve_dir", "repository_root", "triton_dir", "triton_python_dir",
    "variant_dir", "variant_uri",
]
