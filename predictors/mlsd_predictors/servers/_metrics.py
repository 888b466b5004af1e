"""Prometheus series every mlsd predictor exports (the KServe server and the local Triton shim).

Labels on every series: `model` (served name), `version`, `track` (stable|canary|shadow, from
`--track`/MLSD_TRACK), `case_study`. The operator's autoscaling reads `mlsd_inflight_requests` and
`mlsd_requests_total`; the canary analysis reads error rate and p99 from `mlsd_requests_total` /
`mlsd_request_duration_seconds{stage="total"}`, and drift as the PSI between two versions'
`mlsd_prediction_score` histograms. Those buckets are fixed here, identical for every version and
case study, so the histograms of two tracks are always comparable bucket by bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LABELS = ("model", "version", "track", "case_study")

SCORE_BUCKETS: tuple[float, ...] = tuple(round(-1.0 + 0.05 * i, 2) for i in range(41))
"""[-1, 1] in steps of 0.05: probabilities use the upper half, cosine similarities all of it."""
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05,
                                      0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
STAGES = ("preprocess", "predict", "postprocess", "total")

NAMES = {
    "requests": "mlsd_requests_total",
    "errors": "mlsd_request_errors_total",
    "inflight": "mlsd_inflight_requests",
    "duration": "mlsd_request_duration_seconds",
    "batch": "mlsd_batch_size",
    "score": "mlsd_prediction_score",
    "info": "mlsd_model_info",
    "cache": "mlsd_cache_lookups_total",
    "cache_entries": "mlsd_cache_entries",
    "drift": "mlsd_drift_observations_total",
    "drift_reference": "mlsd_drift_reference_fraction",
}


@dataclass(frozen=True)
class Series:
    requests: Counter
    errors: Counter
    inflight: Gauge
    duration: Histogram
    batch: Histogram
    score: Histogram
    info: Gauge
    cache: Counter
    cache_entries: Gauge
    drift: Counter
    drift_reference: Gauge


def create_series(registry: CollectorRegistry = REGISTRY) -> Series:
    return Series(
        requests=Counter("mlsd_requests", "Inference requests finished, by status code.",
                         (*LABELS, "code"), registry=registry),
        errors=Counter("mlsd_request_errors", "Inference requests that failed, by reason.",
                       (*LABELS, "reason"), registry=registry),
        inflight=Gauge("mlsd_inflight_requests", "Inference requests being processed now.",
                       LABELS, registry=registry),
        duration=Histogram("mlsd_request_duration_seconds", "Request latency per stage (total = end to end).",
                           (*LABELS, "stage"), buckets=LATENCY_BUCKETS, registry=registry),
        batch=Histogram("mlsd_batch_size", "Rows per model execution.", LABELS,
                        buckets=BATCH_BUCKETS, registry=registry),
        score=Histogram("mlsd_prediction_score", "Distribution of each prediction's score "
                        "(fixed buckets: comparable across versions).", (*LABELS, "output"),
                        buckets=SCORE_BUCKETS, registry=registry),
        info=Gauge("mlsd_model_info", "The served variant (value 1).", (*LABELS, "precision", "runtime"),
                   registry=registry),
        cache=Counter("mlsd_cache_lookups", "Prediction cache lookups per input row (result: hit | miss).",
                      (*LABELS, "result"), registry=registry),
        cache_entries=Gauge("mlsd_cache_entries", "Rows held in the prediction cache.", LABELS, registry=registry),
        drift=Counter("mlsd_drift_observations", "Served rows per reference bin of each monitored feature "
                      "(the model card's bin edges).", (*LABELS, "feature", "bin"), registry=registry),
        drift_reference=Gauge("mlsd_drift_reference_fraction", "The model card's reference fraction per bin "
                              "(held-out data at build time).", (*LABELS, "feature", "bin"), registry=registry),
    )


_DEFAULT: Series | None = None


def default_series() -> Series:
    """The process-wide series on prometheus_client's default registry (what /metrics serves)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = create_series()
    return _DEFAULT


def observe_scores(histogram, labels: dict[str, str], output: str, scores: np.ndarray) -> None:
    """Adds each score to the histogram; values outside [-1, 1] land in the edge buckets' counts."""
    child = histogram.labels(**labels, output=output)
    for value in np.asarray(scores, dtype=np.float64).ravel():
        child.observe(float(value))
