"""Typed errors of the predictors package (servers map them to HTTP codes in one place)."""

from __future__ import annotations


class PredictorError(Exception):
    """Base class for errors raised by mlsd_predictors."""


class NotServableError(PredictorError):
    """A model variant failed its quality gate; servers and the operator refuse to serve it."""

    def __init__(
        self, *, case_study: str, version: int, precision: str, metric: str, drop: float, threshold: float
    ) -> None:
        self.case_study, self.version, self.precision = case_study, version, precision
        self.metric, self.drop, self.threshold = metric, drop, threshold
        super().__init__(
            f"{case_study} v{version} {precision} is not servable: {metric} is {drop:.2%} worse than fp32 "
            f"(relative), over the {threshold:.2%} threshold; serve another precision or rebuild"
        )


class ParityError(PredictorError):
    """The exported ONNX graph does not reproduce the torch model within tolerance."""


class RepositoryExistsError(PredictorError):
    """The version directory already exists; versions are immutable unless overwrite is asked for."""


class CardError(PredictorError):
    """A model card is missing or does not match the schema."""
