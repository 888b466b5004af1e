"""PromQL for the canary analysis, over the series every mlsd predictor exports
(mlsd_contract.metrics). Series are selected by the labels Prometheus
adds from the pod (namespace, model_deployment from `mlsd.io/model-deployment`) plus the
predictor's own `version` label; docs/progressive-delivery.md shows the scrape relabeling."""

from __future__ import annotations

from dataclasses import dataclass

from mlsd_contract.metrics import DRIFT, DRIFT_REFERENCE, DURATION, REQUESTS, SCORE


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class TrackSelector:
    namespace: str
    model_deployment: str
    version: str

    def labels(self, *extra: str) -> str:
        parts = [f"namespace={_quote(self.namespace)}", f"model_deployment={_quote(self.model_deployment)}",
                 f"version={_quote(self.version)}", *extra]
        return "{" + ",".join(parts) + "}"


def window(seconds: float) -> str:
    return f"{max(int(round(seconds)), 1)}s"


def requests(track: TrackSelector, seconds: float) -> str:
    return f"sum(increase({REQUESTS.series}{track.labels()}[{window(seconds)}]))"


def errors(track: TrackSelector, seconds: float) -> str:
    """Server-side failures only: a 4xx is the client's bad input, not the model's fault."""
    selector = track.labels('code=~"5.."')
    return f"sum(increase({REQUESTS.series}{selector}[{window(seconds)}]))"


def latency_p99_ms(track: TrackSelector, seconds: float) -> str:
    buckets = DURATION.bucket + track.labels('stage="total"')
    return f"1000 * histogram_quantile(0.99, sum by (le) (rate({buckets}[{window(seconds)}])))"


def score_buckets(track: TrackSelector, seconds: float) -> str:
    """Cumulative counts per (output, le); the caller turns them into per-bucket counts."""
    return f"sum by (output, le) (increase({SCORE.bucket}{track.labels()}[{window(seconds)}]))"


def drift_observations(track: TrackSelector, seconds: float) -> str:
    """Served rows per (feature, bin) of the model card's reference histograms, over the window."""
    return f"sum by (feature, bin) (increase({DRIFT.series}{track.labels()}[{window(seconds)}]))"


def drift_reference(track: TrackSelector) -> str:
    """The card's reference fraction per (feature, bin), as the predictor exports it."""
    return f"max by (feature, bin) ({DRIFT_REFERENCE.series}{track.labels()})"
