"""The canary analysis and the rollout state machine: every branch, no cluster, no clock."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from mlsd_contract.api import Analysis, Canary, DeadlineAction
from mlsd_operator.rollout import (
    Action, Control, Decision, TrackMetrics, analyze, decide, format_time, parse_control, per_bucket_counts, psi,
)
from mlsd_operator.rollout._analysis import rebin

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
THRESHOLDS = Analysis(min_requests=100, max_error_rate=0.01, max_latency_p99_ms=50, max_prediction_drift=0.2,
                      failure_limit=2)
SAME = [10.0, 30.0, 40.0, 20.0]
SHIFTED = [40.0, 40.0, 15.0, 5.0]


def track(requests=1000, errors=0, p99=20.0, scores=SAME):
    return TrackMetrics(requests=requests, errors=errors, scores={"score": list(scores)},
                        measured={"latencyP99Ms": p99})


# -- PSI and the verdict ---------------------------------------------------------------------------

def test_psi_is_zero_for_identical_distributions_and_grows_with_shift():
    assert psi(SAME, [x * 3 for x in SAME]) == pytest.approx(0.0, abs=0.01)   # only smoothing differs
    assert psi(SAME, SHIFTED) > 0.2
    assert psi(SAME, [0, 0, 0, 0]) == 0.0          # nothing to compare yet


def test_psi_is_robust_to_small_samples_of_the_same_distribution():
    """Sparse windows must not look like drift: PSI is taken over deciles with add-half smoothing."""
    rng = np.random.default_rng(0)
    edges = np.linspace(-1, 1, 42)
    counts = lambda x: list(np.histogram(x, bins=edges)[0].astype(float))
    reference = counts(rng.beta(1, 20, 100_000))
    assert psi(reference, counts(rng.beta(1, 20, 300))) < 0.1
    assert psi(reference, counts(np.sqrt(rng.beta(1, 20, 300)))) > 1.0


def test_rebin_keeps_every_count():
    expected, actual = rebin([50, 0, 0, 30, 20, 0], [5, 1, 1, 3, 2, 7])
    assert sum(expected) == 100 and sum(actual) == 19


def test_psi_rejects_mismatched_buckets():
    with pytest.raises(ValueError, match="differ in buckets"):
        psi([1, 2], [1, 2, 3])


@pytest.mark.parametrize(("canary", "decision", "metric", "fragment"), [
    (track(requests=50), Decision.WAIT, None, "50 of the 100 requests"),
    (track(errors=20), Decision.FAIL, "errorRate", "error rate 0.0200 > 0.01"),
    (track(p99=80.0), Decision.FAIL, "latencyP99Ms", "p99 latency 80.0ms > 50"),
    (track(scores=SHIFTED), Decision.FAIL, "predictionDrift", "prediction drift (PSI)"),
    (track(), Decision.PASS, None, "within thresholds"),
    (track(p99=None), Decision.PASS, None, "within thresholds"),
    (track(errors=20, p99=80.0), Decision.FAIL, "errorRate", "error rate"),      # errors are checked first
])
def test_verdicts(canary, decision, metric, fragment):
    verdict = analyze(THRESHOLDS, track(), canary)
    assert verdict.decision == decision and verdict.failed_metric == metric
    assert fragment in verdict.reason


def test_drift_takes_the_worst_output_and_ignores_unshared_ones():
    stable = TrackMetrics(1000, 0, {"a": SAME, "b": SAME}, {"latencyP99Ms": 10})
    canary = TrackMetrics(1000, 0, {"a": SAME, "b": SHIFTED, "c": SHIFTED}, {"latencyP99Ms": 10})
    verdict = analyze(THRESHOLDS, stable, canary)
    assert verdict.prediction_drift == pytest.approx(psi(SAME, SHIFTED))
    no_scores = analyze(THRESHOLDS, TrackMetrics(1000), TrackMetrics(1000))
    assert no_scores.decision == Decision.PASS and no_scores.prediction_drift is None


def test_per_bucket_counts_from_cumulative_prometheus_samples():
    result = [{"metric": {"output": "p", "le": le}, "value": [0, v]}
              for le, v in [("0.5", "3"), ("+Inf", "10"), ("0.1", "1")]]
    assert per_bucket_counts(result) == {"p": [1.0, 2.0, 7.0]}


# -- the state machine --------------------------------------------------------------------------------

CANARY = Canary.model_validate({"model": {"version": "2", "storageUri": "pvc://m/2"}, "steps": [10, 25, 50],
                                "interval": "60s", "analysis": THRESHOLDS.to_wire()})


def status(step=0, started=60, failed=0, **extra):
    out = {"version": "2", "step": step, "trafficPercent": CANARY.steps[step], "failedAnalyses": failed}
    if started is not None:
        out["stepStartedAt"] = format_time(NOW - dt.timedelta(seconds=started))
    return out | extra


def verdict_of(canary_track):
    return analyze(THRESHOLDS, track(), canary_track)


def test_holds_until_the_interval_is_over():
    assert decide(CANARY, status(started=30), NOW, None, None).action == Action.HOLD


def test_holds_before_the_canary_started():
    assert decide(CANARY, status(started=None), NOW, None, None).action == Action.HOLD


def test_a_due_analysis_needs_a_verdict():
    with pytest.raises(ValueError):
        decide(CANARY, status(), NOW, None, None)


def test_pass_advances_to_the_next_step_and_restarts_the_clock():
    step = decide(CANARY, status(step=0), NOW, None, verdict_of(track()))
    assert step.action == Action.ADVANCE
    assert step.canary["step"] == 1 and step.canary["trafficPercent"] == 25
    assert step.canary["stepStartedAt"] == format_time(NOW) and step.canary["lastAnalysis"]["passed"] is True


def test_pass_at_the_last_step_promotes():
    step = decide(CANARY, status(step=2), NOW, None, verdict_of(track()))
    assert step.action == Action.PROMOTE and step.ends_rollout and step.canary["trafficPercent"] == 100


def test_too_little_traffic_waits_without_counting_a_failure():
    step = decide(CANARY, status(), NOW, None, verdict_of(track(requests=10)))
    assert step.action == Action.WAIT and "failedAnalyses" not in step.canary
    assert step.canary["lastAnalysis"]["passed"] is False


def test_a_failure_below_the_limit_retries_the_same_step():
    step = decide(CANARY, status(step=1, failed=0), NOW, None, verdict_of(track(errors=50)))
    assert step.action == Action.RETRY
    assert step.canary["failedAnalyses"] == 1 and "step" not in step.canary
    assert step.canary["stepStartedAt"] == format_time(NOW)


def test_reaching_the_failure_limit_rolls_back_naming_the_metric():
    step = decide(CANARY, status(step=1, failed=1), NOW, None, verdict_of(track(p99=99.0)))
    assert step.action == Action.ROLLBACK and step.ends_rollout
    assert step.canary["trafficPercent"] == 0 and step.canary["failedAnalyses"] == 2
    assert step.reason.startswith("latencyP99Ms: p99 latency 99.0ms > 50")


def test_manual_controls():
    assert decide(CANARY, status(), NOW, Control.ABORT, None).action == Action.ABORT
    assert decide(CANARY, status(started=1), NOW, Control.PROMOTE, None).action == Action.PROMOTE
    paused = decide(CANARY, status(), NOW, Control.PAUSED, None)
    assert paused.action == Action.PAUSE and paused.canary == {"paused": True}
    assert decide(CANARY, status(paused=True), NOW, Control.PAUSED, None).action == Action.HOLD
    resumed = decide(CANARY, status(started=600, paused=True), NOW, None, None)
    assert resumed.action == Action.RESUME and resumed.canary["stepStartedAt"] == format_time(NOW)


@pytest.mark.parametrize(("value", "control"), [("paused", Control.PAUSED), ("promote", Control.PROMOTE),
                                                 ("abort", Control.ABORT), ("", None), ("bogus", None), (None, None)])
def test_parse_control(value, control):
    assert parse_control(value) == control


def test_every_check_has_its_threshold_in_the_api_and_its_value_in_status():
    """A rollout metric is one CHECKS entry plus two API fields; these must agree by name."""
    from mlsd_contract.api import AnalysisResult
    from mlsd_operator.rollout._analysis import CHECKS

    result_keys = {field.alias or name for name, field in AnalysisResult.model_fields.items()}
    for check in CHECKS:
        assert check.threshold in Analysis.model_fields, check
        assert check.name in result_keys, check
    status = analyze(THRESHOLDS, track(), track()).to_status("2026-11-27T12:00:00Z")
    assert AnalysisResult.model_validate(status).to_wire() == status


# -- no evidence: never promoted; past progressDeadline, hold (and say so once) or roll back ---------

def test_a_canary_without_requests_never_passes_even_with_min_requests_zero():
    lenient = Analysis.model_validate({**THRESHOLDS.to_wire(), "minRequests": 0})
    verdict = analyze(lenient, track(), track(requests=0, p99=None, scores=[0, 0, 0, 0]))
    assert verdict.decision == Decision.WAIT and "no requests" in verdict.reason
    step = decide(CANARY, status(step=2), NOW, None, verdict)
    assert step.action == Action.WAIT and not step.ends_rollout


def test_past_the_progress_deadline_a_waiting_step_holds_once_and_says_so():
    late = status(started=601)         # default progressDeadline: 10m
    step = decide(CANARY, late, NOW, None, verdict_of(track(requests=10)))
    assert step.action == Action.STALL and step.canary["stalled"] is True
    assert "progressDeadline 10m" in step.reason and "holding at 10%" in step.reason
    again = decide(CANARY, late | {"stalled": True}, NOW, None, verdict_of(track(requests=10)))
    assert again.action == Action.WAIT and "stalled" not in again.canary
    assert decide(CANARY, status(started=599), NOW, None, verdict_of(track(requests=10))).action == Action.WAIT


def test_past_the_progress_deadline_a_rollback_canary_rolls_back():
    strict = CANARY.model_copy(update={"on_progress_deadline": DeadlineAction.ROLLBACK, "progress_deadline": "5m"})
    step = decide(strict, status(step=1, started=300), NOW, None, verdict_of(track(requests=0)))
    assert step.action == Action.ROLLBACK and step.ends_rollout and step.canary["trafficPercent"] == 0
    assert "progressDeadline 5m" in step.reason


def test_evidence_after_a_stall_moves_on_and_clears_it():
    stalled = status(step=0, started=900, stalled=True)
    step = decide(CANARY, stalled, NOW, None, verdict_of(track()))
    assert step.action == Action.ADVANCE and step.canary["stalled"] is None
    failed = decide(CANARY, stalled, NOW, None, verdict_of(track(errors=50)))
    assert failed.action == Action.RETRY and failed.canary["stalled"] is None


def test_the_progress_deadline_is_no_shorter_than_the_interval():
    with pytest.raises(ValueError, match="progressDeadline must be at least canary.interval"):
        Canary.model_validate({"model": {"version": "2", "storageUri": "pvc://m/2"}, "interval": "5m",
                               "progressDeadline": "1m"})
