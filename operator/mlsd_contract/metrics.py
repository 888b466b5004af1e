"""The Prometheus series every mlsd predictor exports and the operator queries.

Predictors (the KServe server, the Triton shim) register them by `name`; the operator's canary
analysis, drift monitor and autoscaling select them by `series` / `bucket`. Labels on every
series: `model`, `version`, `track` (stable|canary|shadow), `case_study`. The score buckets are
fixed here, identical for every version and case study, so two tracks' histograms compare bucket
by bucket (the PSI the analysis computes needs that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LABELS: tuple[str, ...] = ("model", "version", "track", "case_study")

SCORE_BUCKETS: tuple[float, ...] = tuple(round(-1.0 + 0.05 * i, 2) for i in range(41))
"""[-1, 1] in steps of 0.05: probabilities use the upper half, cosine similarities all of it."""
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05,
                                      0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
STAGES: tuple[str, ...] = ("preprocess", "predict", "postprocess", "total")


@dataclass(frozen=True)
class Metric:
    name: str
    """As registered with prometheus_client (a counter's exposed series gains `_total`)."""
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    """Labels beyond LABELS."""

    @property
    def series(self) -> str:
        """The name a PromQL query selects."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    @property
    def bucket(self) -> str:
        if self.kind != "histogram":
            raise TypeError(f"{self.name} is a {self.kind}, it has no buckets")
        return f"{self.name}_bucket"


REQUESTS = Metric("mlsd_requests", "counter", "Inference requests finished, by status code.", ("code",))
ERRORS = Metric("mlsd_request_errors", "counter", "Inference requests that failed, by reason.", ("reason",))
INFLIGHT = Metric("mlsd_inflight_requests", "gauge", "Inference requests being processed now.")
DURATION = Metric("mlsd_request_duration_seconds", "histogram",
                  "Request latency per stage (total = end to end).", ("stage",))
BATCH = Metric("mlsd_batch_size", "histogram", "Rows per model execution.")
SCORE = Metric("mlsd_prediction_score", "histogram", "Distribution of each prediction's score "
               "(fixed buckets: comparable across versions).", ("output",))
INFO = Metric("mlsd_model_info", "gauge", "The served variant (value 1).", ("precision", "runtime"))
CACHE = Metric("mlsd_cache_lookups", "counter", "Prediction cache lookups per input row (result: hit | miss).",
               ("result",))
CACHE_ENTRIES = Metric("mlsd_cache_entries", "gauge", "Rows held in the prediction cache.")
DRIFT = Metric("mlsd_drift_observations", "counter", "Served rows per reference bin of each monitored feature "
               "(the model card's bin edges).", ("feature", "bin"))
DRIFT_REFERENCE = Metric("mlsd_drift_reference_fraction", "gauge", "The model card's reference fraction per bin "
                         "(held-out data at build time).", ("feature", "bin"))

PREDICTOR_METRICS: dict[str, Metric] = {
    "requests": REQUESTS, "errors": ERRORS, "inflight": INFLIGHT, "duration": DURATION, "batch": BATCH,
    "score": SCORE, "info": INFO, "cache": CACHE, "cache_entries": CACHE_ENTRIES, "drift": DRIFT,
    "drift_reference": DRIFT_REFERENCE,
}
"""Every series a predictor exports, by the field name of its `Series`."""
