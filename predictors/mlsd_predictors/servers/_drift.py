"""Live feature and score distributions for drift monitoring (`spec.drift`).

The model card carries, for each monitored input feature and score, the reference histogram
measured on held-out data at build time (bin edges, the fraction per bin, and an optional transform
such as log1p). The predictor bins every served row with the same edges and exports

    mlsd_drift_observations_total{feature, bin}   rows per bin (live)
    mlsd_drift_reference_fraction{feature, bin}   the card's fraction per bin (constant)

so the operator can compute the population stability index per feature from Prometheus alone,
without reading the model repository. Values outside the reference range land in the first or
last bin, exactly as the reference was built (casestudies/_metrics.histogram clips).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

TRANSFORMS = {None: lambda v: v, "log1p": np.log1p}


@dataclass(frozen=True)
class _Feature:
    edges: np.ndarray
    transform: Any
    children: tuple[Any, ...]          # one counter child per bin


class DriftMonitor:
    def __init__(self, reference: Mapping[str, Mapping[str, Any]], observations, reference_fraction,
                 labels: dict[str, str]) -> None:
        self.features: dict[str, _Feature] = {}
        for name, histogram in sorted(reference.items()):
            edges = np.asarray(histogram["binEdges"], dtype=np.float64)
            fractions = list(histogram["fractions"])
            transform = histogram.get("transform")
            if len(edges) != len(fractions) + 1 or transform not in TRANSFORMS:
                continue        # a reference this predictor cannot reproduce is not monitored
            for b, fraction in enumerate(fractions):
                reference_fraction.labels(**labels, feature=name, bin=str(b)).set(float(fraction))
            children = tuple(observations.labels(**labels, feature=name, bin=str(b)) for b in range(len(fractions)))
            self.features[name] = _Feature(edges, TRANSFORMS[transform], children)

    def observe(self, values: Mapping[str, np.ndarray]) -> None:
        for name, raw in values.items():
            feature = self.features.get(name)
            if feature is None:
                continue
            v = feature.transform(np.asarray(raw, dtype=np.float64).ravel())
            v = v[np.isfinite(v)]
            if not v.size:
                continue
            bins = len(feature.children)
            index = np.clip(np.searchsorted(feature.edges, v, side="right") - 1, 0, bins - 1)
            counts = np.bincount(index, minlength=bins)
            for b in np.flatnonzero(counts):
                feature.children[b].inc(int(counts[b]))
