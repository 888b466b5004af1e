"""Prometheus series every mlsd predictor exports (the KServe server and the local Triton shim);
names, labels and buckets are the contract's (mlsd_contract.metrics).

Labels on every series: `model` (served name), `version`, `track` (stable|canary|shadow, from
`--track`/MLSD_TRACK), `case_study`. The operator's autoscaling reads `mlsd_inflight_requests` and
`mlsd_requests_total`; the canary analysis reads error rate and p99 from `mlsd_requests_total` /
`mlsd_request_duration_seconds{stage="total"}`, and drift as the PSI between two versions'
`mlsd_prediction_score` histograms. Those buckets are fixed in the contract, identical for every version and
case study, so the histograms of two tracks are always comparable bucket by bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from mlsd_contract.metrics import (
    BATCH_BUCKETS, LABELS, LATENCY_BUCKETS, PREDICTOR_METRICS, SCORE_BUCKETS, Metric,
)

NAMES = {field: metric.series for field, metric in PREDICTOR_METRICS.items()}
_BUCKETS = {"duration": LATENCY_BUCKETS, "batch": BATCH_BUCKETS, "score": SCORE_BUCKETS}
_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


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


def _collector(field: str, metric: Metric, registry: CollectorRegistry):
    extra = {"buckets": _BUCKETS[field]} if metric.kind == "histogram" else {}
    return _KINDS[metric.kind](metric.name, metric.help, (*LABELS, *metric.labels), registry=registry, **extra)


def create_series(registry: CollectorRegistry = REGISTRY) -> Series:
    return Series(**{field: _collector(field, metric, registry) for field, metric in PREDICTOR_METRICS.items()})


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
