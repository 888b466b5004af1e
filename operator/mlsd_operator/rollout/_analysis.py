"""The canary analysis: live metrics in, a verdict out. Pure; every branch is unit-tested."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from mlsd_contract.api import Analysis

PSI_BINS = 10        # PSI over (at most) deciles of the expected distribution, as usually defined
SMOOTHING = 0.5      # add-half counts per bin: finite PSI without a floor that explodes on sparse bins


class Decision(str, Enum):
    WAIT = "Wait"       # not enough canary traffic yet for a verdict
    PASS = "Pass"
    FAIL = "Fail"


@dataclass(frozen=True)
class TrackMetrics:
    """What Prometheus says about one track over the analysis window."""

    requests: float = 0.0
    errors: float = 0.0
    latency_p99_ms: float | None = None       # None: no latency samples
    scores: dict[str, list[float]] = field(default_factory=dict)   # output -> per-bucket counts

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    requests: float
    error_rate: float
    latency_p99_ms: float | None
    prediction_drift: float | None
    failed_metric: str | None = None

    def to_status(self, at: str) -> dict[str, object]:
        out: dict[str, object] = {"at": at, "passed": self.decision == Decision.PASS, "reason": self.reason,
                                  "requests": round(self.requests, 3), "errorRate": round(self.error_rate, 6)}
        if self.latency_p99_ms is not None:
            out["latencyP99Ms"] = round(self.latency_p99_ms, 3)
        if self.prediction_drift is not None:
            out["predictionDrift"] = round(self.prediction_drift, 6)
        return out


def rebin(expected: list[float], actual: list[float], bins: int = PSI_BINS) -> tuple[list[float], list[float]]:
    """Merges adjacent buckets into at most `bins` bins of roughly equal expected mass. The
    predictors' fixed 41 buckets are fine enough to compare any two versions, but far too many for
    a window's sample: most would be near-empty and PSI would measure noise."""
    total = sum(expected)
    merged_e, merged_a = [0.0], [0.0]
    cumulative, cut = 0.0, 1
    for e, a in zip(expected, actual):
        merged_e[-1] += e
        merged_a[-1] += a
        cumulative += e
        if cumulative >= cut * total / bins and len(merged_e) < bins:
            merged_e.append(0.0)
            merged_a.append(0.0)
            while cumulative >= cut * total / bins:
                cut += 1
    if len(merged_e) > 1 and merged_e[-1] == 0.0:      # fold a trailing empty bin into its neighbour
        tail = merged_a.pop()
        merged_a[-1] += tail
        merged_e.pop()
    return merged_e, merged_a


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of `actual` against `expected` (per-bucket counts, same buckets)."""
    if len(expected) != len(actual):
        raise ValueError(f"histograms differ in buckets: {len(expected)} vs {len(actual)}")
    if sum(expected) <= 0 or sum(actual) <= 0:
        return 0.0
    merged_e, merged_a = rebin(expected, actual)
    total_e = sum(merged_e) + SMOOTHING * len(merged_e)
    total_a = sum(merged_a) + SMOOTHING * len(merged_a)
    value = 0.0
    for e, a in zip(merged_e, merged_a):
        pe = (e + SMOOTHING) / total_e
        pa = (a + SMOOTHING) / total_a
        value += (pa - pe) * math.log(pa / pe)
    return value


REFERENCE_FLOOR = 1e-4   # a reference bin with no held-out mass still gets a little (no division by zero)


def psi_against_reference(fractions: list[float], counts: list[float]) -> float:
    """PSI of live per-bin `counts` against a model card's reference `fractions` (same bins).

    Merged into at most PSI_BINS bins of equal reference mass first, like `psi`; the live side gets
    add-half smoothing (a window's sample is finite), the reference, measured on the whole held-out
    set, only a small floor."""
    if len(fractions) != len(counts):
        raise ValueError(f"histograms differ in bins: {len(fractions)} vs {len(counts)}")
    if sum(fractions) <= 0 or sum(counts) <= 0:
        return 0.0
    merged_e, merged_a = rebin(list(fractions), list(counts))
    total_e = sum(merged_e)
    total_a = sum(merged_a) + SMOOTHING * len(merged_a)
    value = 0.0
    for e, a in zip(merged_e, merged_a):
        pe = max(e / total_e, REFERENCE_FLOOR)
        pa = (a + SMOOTHING) / total_a
        value += (pa - pe) * math.log(pa / pe)
    return value


def drift(stable: TrackMetrics, canary: TrackMetrics) -> float | None:
    """The largest PSI over the outputs both tracks report; None when there is nothing to compare."""
    shared = [o for o in canary.scores if o in stable.scores]
    if not shared:
        return None
    return max(psi(stable.scores[o], canary.scores[o]) for o in shared)


def analyze(thresholds: Analysis, stable: TrackMetrics, canary: TrackMetrics) -> Verdict:
    """Pass, fail or wait, with the first failing metric named (errors, then latency, then drift)."""
    value_drift = drift(stable, canary)
    common = dict(requests=canary.requests, error_rate=canary.error_rate,
                  latency_p99_ms=canary.latency_p99_ms, prediction_drift=value_drift)
    if canary.requests < thresholds.min_requests:
        return Verdict(Decision.WAIT, f"canary served {canary.requests:.0f} of the {thresholds.min_requests} "
                                      "requests needed for a verdict", **common)
    if canary.error_rate > thresholds.max_error_rate:
        return Verdict(Decision.FAIL, f"error rate {canary.error_rate:.4f} > {thresholds.max_error_rate}",
                       failed_metric="errorRate", **common)
    if canary.latency_p99_ms is not None and canary.latency_p99_ms > thresholds.max_latency_p99_ms:
        return Verdict(Decision.FAIL, f"p99 latency {canary.latency_p99_ms:.1f}ms > {thresholds.max_latency_p99_ms}ms",
                       failed_metric="latencyP99Ms", **common)
    if value_drift is not None and value_drift > thresholds.max_prediction_drift:
        return Verdict(Decision.FAIL, f"prediction drift (PSI) {value_drift:.3f} > {thresholds.max_prediction_drift}",
                       failed_metric="predictionDrift", **common)
    parts = [f"error rate {canary.error_rate:.4f}"]
    if canary.latency_p99_ms is not None:
        parts.append(f"p99 {canary.latency_p99_ms:.1f}ms")
    if value_drift is not None:
        parts.append(f"PSI {value_drift:.3f}")
    return Verdict(Decision.PASS, "within thresholds: " + ", ".join(parts), **common)
