"""What the rest of the operator needs of each runtime's builders, in one table: a runtime is
registered here once (its children, which pods are its predictors, whether a Gateway fronts it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlsd_contract.api import ModelDeployment, Runtime
from mlsd_contract.tracks import TrafficState

from ._common import LABEL_DEPLOYMENT
from ._config import RenderConfig
from ._kserve import KSERVE_POD_LABEL, build_kserve
from ._triton import build_triton


@dataclass(frozen=True)
class RuntimeBuilders:
    build: Callable[[ModelDeployment, RenderConfig, TrafficState], list[dict[str, Any]]]
    """Every child of one ModelDeployment on this runtime, in apply order."""
    pod_labels: Callable[[ModelDeployment], dict[str, str]]
    """Labels every predictor pod of the ModelDeployment carries, all tracks."""
    gateway_routed: bool
    """Traffic arrives through a Gateway (its namespace must reach the pods)."""


RUNTIMES: dict[Runtime, RuntimeBuilders] = {
    # KServe labels its predictor pods with the InferenceService's name (= the ModelDeployment's).
    Runtime.KSERVE: RuntimeBuilders(build_kserve, lambda m: {KSERVE_POD_LABEL: m.metadata.name}, gateway_routed=False),
    Runtime.TRITON: RuntimeBuilders(build_triton, lambda m: {LABEL_DEPLOYMENT: m.metadata.name}, gateway_routed=True),
}
