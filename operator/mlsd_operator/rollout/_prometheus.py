"""A minimal Prometheus HTTP API reader (instant queries), and the per-track metrics it assembles."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections import defaultdict

from . import _promql as q
from ._analysis import CHECKS, TrackMetrics


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> list[dict]:
        data = urllib.parse.urlencode({"query": promql}).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/query", data=data, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                body = json.loads(reply.read())
        except (OSError, ValueError) as error:
            raise PrometheusError(f"query failed at {self.url}: {error}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')} (query: {promql})")
        return body["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def track(self, selector: q.TrackSelector, seconds: float) -> TrackMetrics:
        return TrackMetrics(
            requests=self.scalar(q.requests(selector, seconds)) or 0.0,
            errors=self.scalar(q.errors(selector, seconds)) or 0.0,
            scores=per_bucket_counts(self.query(q.score_buckets(selector, seconds))),
            measured={check.name: self.scalar(check.query(selector, seconds)) for check in CHECKS if check.query},
        )


def per_bucket_counts(result: list[dict]) -> dict[str, list[float]]:
    """Cumulative `le` buckets -> counts per bucket, per output, ordered by upper bound."""
    cumulative: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sample in result:
        labels = sample["metric"]
        cumulative[labels.get("output", "")].append((float(labels["le"]), float(sample["value"][1])))
    out = {}
    for output, points in cumulative.items():
        points.sort()
        counts, previous = [], 0.0
        for _, total in points:
            counts.append(max(total - previous, 0.0))
            previous = total
        out[output] = counts
    return out


def per_feature_bins(result: list[dict]) -> dict[str, list[float]]:
    """`{feature, bin}` samples -> values per feature, ordered by bin index (missing bins: 0)."""
    values: dict[str, dict[int, float]] = defaultdict(dict)
    for sample in result:
        labels = sample["metric"]
        value = float(sample["value"][1])
        values[labels.get("feature", "")][int(labels.get("bin", 0))] = 0.0 if math.isnan(value) else value
    return {feature: [bins.get(i, 0.0) for i in range(max(bins) + 1)] for feature, bins in values.items() if bins}
