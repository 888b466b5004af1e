"""The canary analysis: live metrics in, a verdict out. Pure; every branch is unit-tested."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from mlsd_contract.api import Analysis

from . import _promql as q
from ._promql import TrackSelector

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
    scores: dict[str, list[float]] = field(default_factory=dict)   # output -> per-bucket counts
    measured: dict[str, float | None] = field(default_factory=dict)
    """Each CHECKS entry with a query, by name; None: no samples in the window."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def latency_p99_ms(self) -> float | None:
        return self.measured.get("latencyP99Ms")


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    requests: float
    values: dict[str, float | None]
    """Each check's value on the canary (CHECKS order), None when there was nothing to measure."""
    failed_metric: str | None = None

    @property
    def error_rate(self) -> float:
        return self.values.get("errorRate") or 0.0

    @property
    def latency_p99_ms(self) -> float | None:
        return self.values.get("latencyP99Ms")

    @property
    def prediction_drift(self) -> float | None:
        return self.values.get("predictionDrift")

    def to_status(self, at: str) -> dict[str, object]:
        """status.canary.lastAnalysis (the AnalysisResult type)."""
        out: dict[str, object] = {"at": at, "passed": self.decision == Decision.PASS, "reason": self.reason,
                                  "requests": round(self.requests, 3)}
        for check in CHECKS:
            value = self.values.get(check.name)
            if value is not None:
                out[check.name] = round(value, check.digits)
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


@dataclass(frozen=True)
class Check:
    """One metric a canary must keep within `spec.canary.analysis.<threshold>` at every step.

    A new rollout metric is one entry in CHECKS (with its PromQL in _promql.py when it is a plain
    per-track value), its threshold in the API's Analysis and its value in AnalysisResult."""

    name: str
    """Key in status.canary.lastAnalysis, and the failed metric a rollback names."""
    threshold: str
    """The Analysis field holding the limit; the canary fails when its value is above it."""
    fails: str
    passes: str
    """Reason fragments, formatted with `value` and `limit`."""
    digits: int = 6
    query: Callable[[TrackSelector, float], str] | None = None
    """PromQL of a per-track value over the window (TrackMetrics.measured[name]); None: derived."""
    measure: Callable[[TrackMetrics, TrackMetrics], float | None] | None = None
    """The canary's value from both tracks' metrics; default: the canary's measured[name]."""

    def value(self, stable: TrackMetrics, canary: TrackMetrics) -> float | None:
        return self.measure(stable, canary) if self.measure else canary.measured.get(self.name)


CHECKS: tuple[Check, ...] = (    # in the order a failing verdict names them
    Check("errorRate", "max_error_rate", "error rate {value:.4f} > {limit}", "error rate {value:.4f}",
          measure=lambda stable, canary: canary.error_rate),
    Check("latencyP99Ms", "max_latency_p99_ms", "p99 latency {value:.1f}ms > {limit}ms", "p99 {value:.1f}ms",
          digits=3, query=q.latency_p99_ms),
    Check("predictionDrift", "max_prediction_drift", "prediction drift (PSI) {value:.3f} > {limit}",
          "PSI {value:.3f}", measure=drift),
)


def analyze(thresholds: Analysis, stable: TrackMetrics, canary: TrackMetrics) -> Verdict:
    """Pass, fail or wait, with the first failing metric named (CHECKS order)."""
    values = {check.name: check.value(stable, canary) for check in CHECKS}
    if canary.requests <= 0:      # even with minRequests 0: no request is no evidence
        return Verdict(Decision.WAIT, "canary served no requests: no evidence for a verdict", canary.requests,
                       values)
    if canary.requests < thresholds.min_requests:
        return Verdict(Decision.WAIT, f"canary served {canary.requests:.0f} of the {thresholds.min_requests} "
                                      "requests needed for a verdict", canary.requests, values)
    for check in CHECKS:
        value, limit = values[check.name], getattr(thresholds, check.threshold)
        if value is not None and value > limit:
            return Verdict(Decision.FAIL, check.fails.format(value=value, limit=limit), canary.requests, values,
                           failed_metric=check.name)
    parts = [check.passes.format(value=values[check.name]) for check in CHECKS if values[check.name] is not None]
    return Verdict(Decision.PASS, "within thresholds: " + ", ".join(parts), canary.requests, values)
