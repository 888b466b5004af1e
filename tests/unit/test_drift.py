"""The drift verdict (pure): PSI per feature against the model card's references, thresholds, the
minimum sample, the false-alarm rate on unshifted windows and the power on shifted ones."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_contract.api import DriftMonitoring
from mlsd_operator.controller._drift import Reason, assess

SPEC = DriftMonitoring(window="1h", threshold=0.2, minSamples=1000)


def reference(rng: np.random.Generator, bins: int = 20) -> list[float]:
    values = np.log1p(rng.lognormal(2.0, 0.8, size=50_000))
    counts, _ = np.histogram(values, bins=bins)
    return list(counts / counts.sum())


def window(fractions: list[float], rows: int, rng: np.random.Generator, shift: int = 0) -> list[float]:
    counts = rng.multinomial(rows, fractions)
    if shift:       # every row moves `shift` bins up (the top bin keeps what would fall off): same rows
        moved = np.zeros_like(counts)
        moved[shift:] = counts[:-shift]
        moved[-1] += counts[-shift:].sum()
        counts = moved
    return [float(c) for c in counts]


def test_no_reference_and_too_little_traffic_give_no_verdict():
    assert assess({}, {}, SPEC, "1").reason == Reason.NO_REFERENCE
    rng = np.random.default_rng(0)
    ref = {"input:a": reference(rng)}
    verdict = assess(ref, {"input:a": window(ref["input:a"], 999, rng)}, SPEC, "1")
    assert verdict.drifted is None and verdict.reason == Reason.INSUFFICIENT_DATA
    assert "999 rows" in verdict.message and verdict.samples == 999


def test_shifted_features_are_named_worst_first():
    rng = np.random.default_rng(1)
    ref = {f"input:{n}": reference(rng) for n in ("price", "position", "age")}
    live = {"input:price": window(ref["input:price"], 5000, rng, shift=6),
            "input:position": window(ref["input:position"], 5000, rng, shift=3),
            "input:age": window(ref["input:age"], 5000, rng)}
    verdict = assess(ref, live, SPEC, "1")
    assert verdict.drifted is True and verdict.reason == Reason.DRIFT_DETECTED
    assert [f for f, _ in verdict.features[:2]] == ["input:price", "input:position"]
    assert verdict.features[-1][0] == "input:age" and verdict.features[-1][1] < 0.05
    assert "input:price" in verdict.message and "input:age" not in verdict.message


def test_a_feature_missing_from_live_traffic_counts_as_zero_rows():
    rng = np.random.default_rng(2)
    ref = {"input:a": reference(rng), "input:b": reference(rng)}
    verdict = assess(ref, {"input:a": window(ref["input:a"], 2000, rng)}, SPEC, "1")
    assert [f for f, _ in verdict.features] == ["input:a"] and verdict.drifted is False


@pytest.mark.parametrize("rows", [1000, 5000])
def test_false_alarm_rate_on_unshifted_windows_and_power_on_shifted_ones(rows, record_property):
    """500 windows drawn from the reference itself (the null): how often would `Drifted` fire?
    And 200 windows whose mass moved by two of 20 bins (a shift users would want flagged)."""
    rng = np.random.default_rng(3)
    ref = {f"input:f{i}": reference(rng) for i in range(6)}        # six features, like ad-click's dense inputs
    alarms = sum(bool(assess(ref, {f: window(p, rows, rng) for f, p in ref.items()}, SPEC, "1").drifted)
                 for _ in range(500))
    detected = sum(bool(assess(ref, {f: window(p, rows, rng, shift=2 if f == "input:f0" else 0)
                                     for f, p in ref.items()}, SPEC, "1").drifted) for _ in range(200))
    record_property("false_alarms_of_500", alarms)
    record_property("detected_of_200", detected)
    assert alarms == 0, f"{alarms}/500 false alarms at {rows} rows per window"
    assert detected == 200, f"only {detected}/200 shifted windows flagged at {rows} rows per window"
