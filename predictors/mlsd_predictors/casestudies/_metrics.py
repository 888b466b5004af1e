"""Task metrics over numpy arrays: ranking (AUC, NDCG, recall/precision@k) and probabilistic (log loss).

Kept dependency-free (numpy only) so the builds and the later servers compute them the same way.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-7


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney statistic, ties counted half."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both positive and negative labels")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # Average ranks over runs of equal scores.
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = starts + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy (nats)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def precision_at_k(neighbour_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean fraction of each query's k neighbours that share its label; neighbour_labels is [Q, k]."""
    return float(np.mean(neighbour_labels == np.asarray(query_labels)[:, None]))


def recall_at_k(retrieved: np.ndarray, relevant: np.ndarray) -> float:
    """Mean |retrieved ∩ relevant| / |relevant| over rows; both are [Q, *] id arrays (-1 = padding)."""
    hits = [
        len(np.intersect1d(r[r >= 0], t[t >= 0])) / max(int((t >= 0).sum()), 1)
        for r, t in zip(retrieved, relevant, strict=True)
    ]
    return float(np.mean(hits))


def ndcg_at_k(gains_in_ranked_order: np.ndarray, ideal_gains: np.ndarray, k: int) -> float:
    """Mean NDCG@k: row-wise DCG of the ranked gains over DCG of the ideal gains (both [Q, >=k])."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (np.asarray(gains_in_ranked_order)[:, :k] * discounts).sum(axis=1)
    ideal = (-np.sort(-np.asarray(ideal_gains), axis=1))[:, :k]
    idcg = (ideal * discounts[: ideal.shape[1]]).sum(axis=1)
    return float(np.mean(dcg / np.maximum(idcg, 1e-12)))


def histogram(values: np.ndarray, *, bins: int = 20, low: float | None = None, high: float | None = None) -> dict:
    """Reference histogram for drift monitoring: bin edges and the fraction of values per bin.

    Bounded quantities (probabilities) pass fixed `low`/`high`; others use the observed range.
    Live values outside the range belong to the first/last bin (documented in docs/models.md).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lo = float(v.min()) if low is None else low
    hi = float(v.max()) if high is None else high
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
    return {
        "binEdges": [round(float(e), 6) for e in edges],
        "fractions": [round(float(c) / max(v.size, 1), 6) for c in counts],
    }


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (predict positive when score >= it) with the highest F1."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    true_positives = np.cumsum(y)
    predicted = np.arange(1, len(s) + 1)
    f1 = 2 * true_positives / (predicted + max(int(y.sum()), 1))
    last_of_run = np.r_[s[1:] != s[:-1], True]  # a threshold admits every tied score
    best = int(np.argmax(np.where(last_of_run, f1, -1.0)))
    return float(s[best])
