"""The predictor's lenient card reading and the servable gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsd_predictors import CardError
from mlsd_predictors.servers import VariantNotServable
from mlsd_predictors.servers._card import load_servable, request_signature
from mlsd_predictors.servers._signature import TensorSpec


def card(tmp_path: Path, **overrides) -> Path:
    tensor = lambda n, t, s: {"name": n, "datatype": t, "shape": s}  # noqa: E731
    body = {
        "schemaVersion": 1, "caseStudy": "video-recommendation", "version": 3, "precision": "int8",
        "signature": {"inputs": [tensor("user_id", "INT64", [-1, 1]), tensor("user_features", "FP32", [-1, 15]),
                                 tensor("candidate_ids", "INT64", [-1, -1])],
                      "outputs": [tensor("scores", "FP32", [-1, -1])]},
        "graphs": [{"role": "retrieval", "file": "retrieval.onnx", "sizeBytes": 10, "futureField": {},
                    "signature": {"inputs": [tensor("user_id", "INT64", [-1, 1]), tensor("user_features", "FP32", [-1, 15])],
                                  "outputs": [tensor("user_embedding", "FP32", [-1, 32])]}}],
        "primaryMetric": "ndcg@10", "relativeDrop": {"ndcg@10": 0.031}, "servable": True,
        "somethingNew": [1, 2],
    } | overrides
    (tmp_path / "model-card.json").write_text(json.dumps(body))
    return tmp_path


def test_reads_what_it_needs_and_ignores_the_rest(tmp_path: Path) -> None:
    loaded = load_servable(card(tmp_path))
    signature = request_signature(loaded, "retrieval", (TensorSpec("scores", "FP32", (50,)),), None)
    assert [(s.name, s.shape) for s in signature.inputs] == [("user_id", (1,)), ("user_features", (15,))]
    assert signature.max_batch_size == 64
    primary = request_signature(loaded, "model", (), 8)   # no such graph: the card's own signature
    assert [s.name for s in primary.inputs] == ["user_id", "user_features", "candidate_ids"]


def test_not_servable_is_refused_naming_variant_and_drop(tmp_path: Path) -> None:
    with pytest.raises(VariantNotServable, match=r"video-recommendation v3 int8 is not servable: ndcg@10 is 3\.10% worse"):
        load_servable(card(tmp_path, servable=False))
    with pytest.raises(VariantNotServable, match="calibration drifted"):
        load_servable(card(tmp_path, servable=False, notServableReason="calibration drifted"))


def test_missing_or_foreign_cards(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="no model card"):
        load_servable(tmp_path)
    with pytest.raises(CardError, match="schema version 2"):
        load_servable(card(tmp_path, schemaVersion=2))
    with pytest.raises(CardError, match="not a model card"):
        load_servable(card(tmp_path, signature="nope"))
