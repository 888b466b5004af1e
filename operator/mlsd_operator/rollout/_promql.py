"""PromQL for the canary analysis. Series are selected by the labels Prometheus adds from the pod
(namespace, model_deployment from `mlsd.io/model-deployment`, version from `mlsd.io/version`);
docs/progressive-delivery.md shows the scrape relabeling.

Each query reads what the track's pods export. The mlsd predictors export the mlsd_* series
(mlsd_contract.metrics). tritonserver exports no mlsd_* request series, only its own nv_* series
per model, so request, error and latency queries fall back to those (PromQL `or`):
- requests and failures as counters;
- latency as a summary over a sliding window (`--metrics-config=summary_latencies=true`).
They are selected on the entry model clients call (the case study), so an ensemble's steps are not
counted again. The score histograms come from the Python-backend shim (mlsd_prediction_score, the
same buckets as KServe's)."""

from __future__ import annotations

from dataclasses import dataclass

from mlsd_contract.metrics import DRIFT, DRIFT_REFERENCE, DURATION, REQUESTS, SCORE


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


TRITON_SUCCESS = "nv_inference_request_success"
TRITON_FAILURE = "nv_inference_request_failure"
TRITON_LATENCY_SUMMARY = "nv_inference_request_summary_us"


@dataclass(frozen=True)
class TrackSelector:
    namespace: str
    model_deployment: str
    version: str
    model: str | None = None
    """The entry model's name (the case study), for tritonserver's per-model series."""

    def labels(self, *extra: str) -> str:
        parts = [f"namespace={_quote(self.namespace)}", f"model_deployment={_quote(self.model_deployment)}",
                 f"version={_quote(self.version)}", *extra]
        return "{" + ",".join(parts) + "}"

    def triton(self, *extra: str) -> str:
        """`labels` plus the entry model's name, for tritonserver's per-model series."""
        return self.labels(f"model={_quote(self.model or '')}", *extra)


def window(seconds: float) -> str:
    return f"{max(int(round(seconds)), 1)}s"


def _increase(series: str, seconds: float) -> str:
    return f"sum(increase({series}[{window(seconds)}]))"


def requests(track: TrackSelector, seconds: float) -> str:
    # Triton: every finished request, failed or not ("or vector(0)": a counter not there yet)
    triton = (f"({_increase(TRITON_SUCCESS + track.triton(), seconds)} or vector(0)) + "
              f"({_increase(TRITON_FAILURE + track.triton(), seconds)} or vector(0))")
    return f"{_increase(REQUESTS.series + track.labels(), seconds)} or ({triton})"


def errors(track: TrackSelector, seconds: float) -> str:
    """Server-side failures only: a 4xx is the client's bad input, not the model's fault. Triton
    counts a failed request without telling the two apart, so every failure counts there."""
    ours = _increase(REQUESTS.series + track.labels('code=~"5.."'), seconds)
    return f"{ours} or {_increase(TRITON_FAILURE + track.triton(), seconds)}"


def latency_p99_ms(track: TrackSelector, seconds: float) -> str:
    buckets = DURATION.bucket + track.labels('stage="total"')
    ours = f"1000 * histogram_quantile(0.99, sum by (le) (rate({buckets}[{window(seconds)}])))"
    # Triton: the slowest replica's p99, over Triton's own sliding window
    return f"({ours}) or (max({TRITON_LATENCY_SUMMARY}{track.triton('quantile=' + _quote('0.99'))}) / 1000)"


def score_buckets(track: TrackSelector, seconds: float) -> str:
    """Cumulative counts per (output, le); the caller turns them into per-bucket counts."""
    return f"sum by (output, le) (increase({SCORE.bucket}{track.labels()}[{window(seconds)}]))"


def drift_observations(track: TrackSelector, seconds: float) -> str:
    """Served rows per (feature, bin) of the model card's reference histograms, over the window."""
    return f"sum by (feature, bin) (increase({DRIFT.series}{track.labels()}[{window(seconds)}]))"


def drift_reference(track: TrackSelector) -> str:
    """The card's reference fraction per (feature, bin), as the predictor exports it."""
    return f"max by (feature, bin) ({DRIFT_REFERENCE.series}{track.labels()})"
