"""Model cards: JSON round trip, loader errors, and refusal of non-servable variants."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd_predictors import (
    CASE_STUDIES,
    CardError,
    ModelCard,
    NotServableError,
    RepositoryCard,
    check_servable,
    figures_table,
    load_card,
    load_repository_card,
    quality_table,
)
from mlsd_predictors._card import dump_card

from .conftest import VERSION


def test_round_trip(cards: dict[str, ModelCard], summary: RepositoryCard, tmp_path: Path) -> None:
    for card in [*cards.values(), summary]:
        path = tmp_path / "card.json"
        dump_card(card, path)
        loaded = load_card(path) if isinstance(card, ModelCard) else load_repository_card(path)
        assert loaded == card


def test_loader_accepts_the_directory_and_names_bad_files(root: Path, tmp_path: Path) -> None:
    assert load_card(root / "kserve" / "fp32") == load_card(root / "kserve" / "fp32" / "model-card.json")
    with pytest.raises(CardError, match="no model card"):
        load_card(tmp_path)
    (tmp_path / "model-card.json").write_text('{"caseStudy": "x"}')
    with pytest.raises(CardError, match="not a valid ModelCard"):
        load_card(tmp_path)


def not_servable(card: ModelCard, drop: float) -> ModelCard:
    metric = card.primary_metric
    return card.model_copy(update={
        "servable": False,
        "relative_drop": {**card.relative_drop, metric: drop},
        "not_servable_reason": f"{metric} is {drop:.2%} worse than fp32",
    })  # fmt: skip


def test_check_servable_refuses_with_a_clear_message(cards: dict[str, ModelCard], case: str) -> None:
    card = not_servable(cards["int8"], 0.034)
    with pytest.raises(NotServableError) as raised:
        check_servable(card)
    error = raised.value
    assert (error.case_study, error.precision, error.metric, error.drop) == (case, "int8", card.primary_metric, 0.034)
    message = str(error)
    assert case in message and "int8" in message and card.primary_metric in message and "3.40%" in message
    assert "1.00%" in message  # the threshold


def test_refusal_survives_a_round_trip(cards: dict[str, ModelCard], tmp_path: Path) -> None:
    dump_card(not_servable(cards["fp16"], 0.5), tmp_path / "model-card.json")
    with pytest.raises(NotServableError, match="fp16"):
        check_servable(load_card(tmp_path))


def test_figures_tables_read_every_case(repository_out: Path) -> None:
    figures = figures_table(repository_out, VERSION)
    assert figures.count("\n") == 2 + 3 * len(CASE_STUDIES)
    assert all(case in figures and case in quality_table(repository_out, VERSION) for case in CASE_STUDIES)
