"""Case-study building blocks: reproducibility, serving-time pre-processing, torch-free cards."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from mlsd_predictors.casestudies import MAX_TOKENS, VideoRecommendation, tokenize
from mlsd_predictors.casestudies._harmful_content import WORD_IDS, WORDS
from mlsd_predictors.casestudies._training import predict


def test_same_seed_same_model() -> None:
    def train(seed: int) -> np.ndarray:
        case = VideoRecommendation(small=True, seed=seed)
        case.train(lambda *_: None)
        inputs = case.graphs()[0].example_inputs
        return predict(case.ranker, *inputs.values())[0]

    first = train(11)
    assert np.array_equal(first, train(11))
    assert not np.array_equal(first, train(12))


def test_tokenize_matches_the_training_vocabulary() -> None:
    ids = tokenize(f"{WORDS[3].upper()} {WORDS[10]}")
    assert ids.shape == (MAX_TOKENS,) and ids.dtype == np.int64
    assert ids[:2].tolist() == [WORD_IDS[3], WORD_IDS[10]] and not ids[2:].any()
    assert len(tokenize(" ".join(["w"] * 100))) == MAX_TOKENS


def test_cards_load_without_torch() -> None:
    code = "import sys, mlsd_predictors; mlsd_predictors.load_card; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
