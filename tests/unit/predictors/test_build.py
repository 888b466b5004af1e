"""The built repositories: layout, quality against trivial baselines, parity, quantization gate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mlsd_predictors import PRECISIONS, ModelCard, NotServableError, RepositoryCard, check_servable
from mlsd_predictors.casestudies import REGISTRY

from .conftest import VERSION

# Margin by which fp32 must beat the trivial baseline on the primary metric (absolute).
MARGIN = {"visual-search": 0.2, "harmful-content": 0.2, "video-recommendation": 0.25, "ad-click-prediction": 0.2}
AUX_FILES = {
    "visual-search": {"catalogue.usearch", "catalogue.json"},
    "harmful-content": set(),
    "video-recommendation": {"retrieval.onnx", "videos.usearch", "videos.json"},
    "ad-click-prediction": set(),
}


def test_layout(root: Path, case: str) -> None:
    assert (root / "model-card.json").is_file()
    steps = REGISTRY[case](small=True, seed=0).triton_steps()
    assert case in {s.name for s in steps}, "the Triton entry point is named after the case study"
    for precision in PRECISIONS:
        kserve = root / "kserve" / precision
        assert {p.name for p in kserve.iterdir()} == {"model.onnx", "model-card.json", "self-check.npz"} | AUX_FILES[case]
        for layout in ("triton", "triton-python"):
            repo = root / layout / precision
            # Model directories, and the variant's card with its self-check rows (for the model puller).
            assert {p.name for p in repo.iterdir()} == {s.name for s in steps} | {"model-card.json", "self-check.npz"}
            for step in steps:
                version_dir = repo / step.name / str(VERSION)
                assert (repo / step.name / "config.pbtxt").is_file()
                files = {p.name for p in version_dir.iterdir()}
                if step.kind == "ensemble":
                    assert files == set()
                    continue
                expected = {"model.onnx"} | ({"model.py"} if layout == "triton-python" or step.kind == "ann" else set())
                assert files == expected | ({step.index_file} if step.index_file else set())


def test_fp32_beats_trivial_baseline(summary: RepositoryCard, case: str) -> None:
    fp32 = summary.variants[0]
    metric = summary.primary_metric
    assert fp32.precision == "fp32"
    assert fp32.metrics[metric] >= summary.baseline_metrics[metric] + MARGIN[case], (fp32.metrics, summary.baseline_metrics)


def test_case_specific_quality(cards: dict[str, ModelCard], case: str) -> None:
    m, base = cards["fp32"].metrics, cards["fp32"].baseline_metrics
    if case == "visual-search":
        assert m["precision@10"] > base["pixels_precision@10"] + 0.1  # better than raw pixels
        assert m["ann_recall@10"] >= 0.95
    elif case == "harmful-content":
        assert all(m[f"auc_{c}"] > 0.65 for c in cards["fp32"].labels)  # every head learnt something
        assert m["mean_auc"] <= m["bayes_mean_auc"] + 0.02  # nothing beats the generator's truth
        thresholds = cards["fp32"].training["decision_thresholds"]
        assert set(thresholds) == set(cards["fp32"].labels) and all(0 < t < 1 for t in thresholds.values())
    elif case == "video-recommendation":
        recall = next(k for k in m if k.startswith("recall@"))
        assert m[recall] > base[recall] + 0.3
        assert m["ndcg@10"] > m["retrieval_only_ndcg@10"]  # the ranker adds over retrieval order
    else:
        assert m["log_loss"] < base["log_loss"] - 0.05
        assert m["log_loss"] > m["bayes_log_loss"] - 0.01
        assert 0.8 < m["calibration"] < 1.2


def test_parity(cards: dict[str, ModelCard]) -> None:
    assert cards["fp32"].parity_max_abs_error <= 1e-4
    assert cards["fp16"].parity_max_abs_error <= 5e-3
    assert cards["int8"].parity_max_abs_error <= 0.2


def test_servable_follows_the_gate(cards: dict[str, ModelCard]) -> None:
    """Servable exactly when the drop's 95% upper bound is within the threshold; the reason says which
    side failed. Which variants pass depends on the trained model (and so on the CPU that trained it):
    this checks the rule, not the luck."""
    assert cards["fp32"].servable and cards["fp32"].gate.drop_upper == 0
    for card in cards.values():
        gate = card.gate
        assert gate.metric == card.primary_metric and gate.threshold == card.max_relative_drop
        assert gate.drop == card.relative_drop[card.primary_metric] and gate.drop_upper >= gate.drop
        assert gate.examples >= 100 and gate.resamples == (0 if card.precision == "fp32" else 1000)
        assert card.servable == (gate.drop_upper <= card.max_relative_drop)
        if card.servable:
            check_servable(card)
            assert card.not_servable_reason is None
        else:
            assert card.primary_metric in card.not_servable_reason
            assert ("over the" in card.not_servable_reason) == (gate.drop > gate.threshold)
            with pytest.raises(NotServableError):
                check_servable(card)


def test_int8_is_smaller_and_recorded_with_its_machine(cards: dict[str, ModelCard]) -> None:
    int8 = cards["int8"]
    assert int8.size_bytes < cards["fp32"].size_bytes
    assert all("7-bit" in g.quantization for g in int8.graphs)
    for card in cards.values():
        assert card.measured_on.onnxruntime == ort.__version__ and card.measured_on.cpu
        assert card.self_check.rows == 16 and set(card.self_check.tolerance) == {g.file for g in card.graphs}
        assert card.self_check.file in card.files


def test_cards_describe_the_variant(cards: dict[str, ModelCard], root: Path, case: str) -> None:
    for precision, card in cards.items():
        assert (card.case_study, card.version, card.precision, card.data_seed, card.small) == (case, VERSION, precision, 7, True)
        files = {p.name: p.stat().st_size for p in (root / "kserve" / precision).iterdir() if p.name != "model-card.json"}
        assert card.files == files and card.size_bytes == sum(files.values())
        assert card.latency_ms.batch1 > 0 and card.latency_ms.batch64 > 0
        for spec in card.signature.inputs + card.signature.outputs:
            assert spec.shape[0] == -1 and spec.datatype in {"FP32", "INT64"}
        assert any(k.startswith("output:") for k in card.reference_distribution)
        assert any(k.startswith("input:") for k in card.reference_distribution)
        for histogram in card.reference_distribution.values():
            assert len(histogram.bin_edges) == len(histogram.fractions) + 1
            assert math.isclose(sum(histogram.fractions), 1.0, abs_tol=1e-3)


def test_graphs_take_any_batch_size(root: Path, cards: dict[str, ModelCard]) -> None:
    rng = np.random.default_rng(0)
    for precision, card in cards.items():
        for graph in card.graphs:
            session = ort.InferenceSession(str(root / "kserve" / precision / graph.file))
            for batch in (1, 5):
                feeds = {}
                for spec in graph.signature.inputs:
                    shape = [batch, *(d if d > 0 else 7 for d in spec.shape[1:])]
                    # Small non-negative ids are valid for every id input (users, videos, hashed tokens).
                    feeds[spec.name] = rng.integers(0, 50, shape) if spec.datatype == "INT64" else rng.random(shape, dtype=np.float32)
                outputs = session.run(None, feeds)
                assert all(len(o) == batch for o in outputs)


def test_summary_lists_every_variant(summary: RepositoryCard, cards: dict[str, ModelCard]) -> None:
    assert [v.precision for v in summary.variants] == list(PRECISIONS)
    for variant in summary.variants:
        card = cards[variant.precision]
        assert (variant.servable, variant.metrics, variant.size_bytes) == (card.servable, card.metrics, card.size_bytes)
        assert variant.paths["kserve"] == f"kserve/{variant.precision}"


def test_card_json_uses_contract_names(root: Path) -> None:
    raw = json.loads((root / "kserve" / "int8" / "model-card.json").read_text())
    for key in ("caseStudy", "version", "precision", "signature", "metrics", "relativeDrop", "parityMaxAbsError",
                "sizeBytes", "files", "latencyMs", "training", "dataSeed", "buildTime", "servable",
                "notServableReason", "referenceDistribution", "baselineMetrics", "maxRelativeDrop", "measuredOn",
                "gate", "selfCheck"):  # fmt: skip
        assert key in raw
    assert set(raw["gate"]) == {"metric", "examples", "drop", "dropUpper", "resamples", "threshold"}
    assert set(raw["measuredOn"]) == {"cpu", "machine", "isa", "onnxruntime", "torch"}
    assert set(raw["latencyMs"]) >= {"batch1", "batch64"}
