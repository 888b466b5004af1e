"""Progressive delivery: the canary analysis (pure), the rollout state machine (pure), PromQL, and
a small Prometheus reader."""

from ._analysis import Decision, TrackMetrics, Verdict, analyze, drift, psi, psi_against_reference
from ._machine import (
    CONTROL_ANNOTATION, Action, Control, Step, analysis_due, decide, format_time, parse_control, parse_time,
)
from ._prometheus import Prometheus, PrometheusError, per_bucket_counts, per_feature_bins
from ._promql import TrackSelector

__all__ = [
    "CONTROL_ANNOTATION", "Action", "Control", "Decision", "Prometheus", "PrometheusError", "Step",
    "TrackMetrics", "TrackSelector", "Verdict", "analysis_due", "analyze", "decide", "drift", "format_time",
    "parse_control", "parse_time", "per_bucket_counts", "per_feature_bins", "psi", "psi_against_reference",
]
