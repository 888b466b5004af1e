"""Task metrics against brute-force definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_predictors.casestudies._metrics import best_f1_threshold, histogram, log_loss, ndcg_at_k, precision_at_k, recall_at_k, roc_auc


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=30))
def test_auc_is_the_probability_a_positive_outranks_a_negative(rows: list[tuple[bool, int]]) -> None:
    labels = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows], dtype=float)
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        with pytest.raises(ValueError):
            roc_auc(labels, scores)
        return
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(positives, negatives)]
    assert roc_auc(labels, scores) == pytest.approx(np.mean(pairs))


def test_log_loss_and_ranking_metrics() -> None:
    assert log_loss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    gains = np.array([[3.0, 2.0, 1.0, 0.0]])
    assert ndcg_at_k(gains, gains, 3) == pytest.approx(1.0)
    assert ndcg_at_k(gains[:, ::-1], gains, 2) < 0.5
    assert precision_at_k(np.array([[1, 1, 2, 3]]), np.array([1])) == 0.5
    assert recall_at_k(np.array([[5, 6, 7]]), np.array([[7, 8]])) == 0.5


def test_histogram_fractions_cover_all_values() -> None:
    h = histogram(np.array([-5.0, 0.1, 0.5, 0.9, 7.0]), bins=4, low=0.0, high=1.0)
    assert len(h["binEdges"]) == 5 and sum(h["fractions"]) == pytest.approx(1.0)
    assert h["fractions"][0] == pytest.approx(0.4)  # -5 clipped into the first bin with 0.1


def test_best_f1_threshold() -> None:
    labels = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    # Thresholds 0.8 (F1 0.8) and 0.6 (F1 6/7): 0.6 wins.
    assert best_f1_threshold(labels, scores) == pytest.approx(0.6)
