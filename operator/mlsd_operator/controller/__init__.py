"""The kopf operator for ModelDeployments. Importing it registers the handlers:

    kopf run -m mlsd_operator.controller --all-namespaces
    mlsd operator                       # the same, with health, metrics and settings wired
"""

from . import _handlers  # noqa: F401  (registers the kopf handlers)
from ._kube import CHILD_KINDS, Kube, MissingApi, OwnershipConflict
from ._reconcile import ReconcileResult, PermanentFailure, WaitingForDependency, reconcile
from ._settings import OperatorSettings

__all__ = ["CHILD_KINDS", "Kube", "MissingApi", "OperatorSettings", "ReconcileResult", "OwnershipConflict",
           "PermanentFailure", "WaitingForDependency", "reconcile"]
