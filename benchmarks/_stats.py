"""Aggregation the report relies on: median and spread of repeated runs, percentiles, growth with N."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def percentiles(samples: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    """Percentiles of raw samples (linear interpolation, numpy's default); NaN when there are none."""
    if not samples:
        return [math.nan] * len(qs)
    return [float(v) for v in np.percentile(np.asarray(samples, dtype=float), qs)]


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Median and spread of repeated runs: min, max, and the interquartile range.

    With 3-5 repeats the min-max range is the honest spread (the IQR of three numbers says little),
    so the report prints `median (min-max)`; q1/q3 are kept in the JSON for longer series."""
    data = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not data:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "q1": math.nan, "q3": math.nan, "n": 0}
    q1, median, q3 = np.percentile(data, [25, 50, 75])
    return {"median": float(median), "min": min(data), "max": max(data), "q1": float(q1), "q3": float(q3),
            "n": len(data)}


def growth(ns: Sequence[float], ys: Sequence[float]) -> dict:
    """How a cost y grows with N: the least-squares exponent b of y = a * N^b (log-log; b = 1 is
    linear, b < 1 sub-linear), the cost per unit y/N at each N, and the step ratios
    (y2/y1) / (N2/N1) between consecutive N (1.0: linear over that step)."""
    pairs = sorted((float(n), float(y)) for n, y in zip(ns, ys, strict=True)
                   if n and y and n > 0 and y > 0 and not math.isnan(float(y)))
    result: dict = {"per_n": [{"n": n, "y": y, "y_per_n": y / n} for n, y in pairs], "steps": [],
                    "exponent": math.nan, "coefficient": math.nan}
    for (n1, y1), (n2, y2) in zip(pairs, pairs[1:]):
        result["steps"].append({"from": n1, "to": n2, "ratio": (y2 / y1) / (n2 / n1)})
    if len({n for n, _ in pairs}) >= 2:
        slope, intercept = np.polyfit(np.log([n for n, _ in pairs]), np.log([y for _, y in pairs]), 1)
        result["exponent"], result["coefficient"] = float(slope), float(math.exp(intercept))
    return result


def describe_growth(fit: dict) -> str:
    """One sentence for the report: 'grows as N^0.93 (near linear); per N: ...'."""
    b = fit.get("exponent", math.nan)
    if math.isnan(b):
        return "one N only: no growth fit"
    shape = "sub-linear" if b < 0.9 else "near linear" if b <= 1.1 else "super-linear"
    steps = ", ".join(f"{s['from']:g}->{s['to']:g}: {s['ratio']:.2f}x linear" for s in fit["steps"])
    return f"grows as N^{b:.2f} ({shape}); per step {steps}"
