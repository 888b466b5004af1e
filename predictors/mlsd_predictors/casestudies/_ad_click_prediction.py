"""Ad click prediction: DCN-v2 (cross network + deep tower) over hashed sparse and dense features.

Known structure: 8 categorical fields with Zipf-distributed, high-cardinality raw ids (up to 10^6
values; think user, ad, publisher, ...) and 6 positive dense features (counts, prices). The true
click logit is a bias, plus an effect per frequent id of each field (the long tail carries none),
plus factorisation-machine-style interactions between pairs of fields, plus linear and non-linear
dense terms and one dense x sparse interaction. Clicks are drawn from sigmoid(logit), so the
Bayes-optimal log loss and AUC on the test set are known and reported beside the model's.

Serving: raw ids go in as they are; the graph hashes them ((id * a_f + b_f) mod p mod buckets, one
hash per field) and log-standardises the dense features, so clients need no pre-processing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _metrics
from ._base import CaseStudy, EpochCallback, Evaluation, Graph, Precision, Runner, TritonStep
from ._training import fit, seeded

FIELDS = ("user", "ad", "advertiser", "publisher", "site_category", "device", "hour", "country")
CARDINALITY = (1_000_000, 200_000, 20_000, 50_000, 300, 50, 24, 60)
DENSE = ("user_age_days", "ad_price", "page_views", "session_seconds", "past_clicks", "position")
BUCKETS = 1 << 15
_PRIME = 2_147_483_647  # 2^31 - 1: hash modulus; raw ids are below it
_HASH_A = (1_103_515_245, 2_654_435_761 % _PRIME, 40_503, 69_069, 1_664_525, 22_695_477, 134_775_813, 214_013)
_HASH_B = (12_345, 7, 101, 2_531_011, 1_013_904_223, 1, 1, 2_531_011)
_INTERACTING_PAIRS = ((0, 1), (1, 3), (2, 4), (0, 5))


class Generator:
    """The click world: per-id effects, pairwise latent factors, dense terms."""

    def __init__(self, rng: np.random.Generator) -> None:
        # Raw id of the r-th most frequent value: an arbitrary-looking bijection of the rank.
        self.id_multiplier = rng.integers(1_000, 1_000_000, size=len(FIELDS)) * 2 + 1
        self.id_offset = rng.integers(1, 1_000_000, size=len(FIELDS))
        informative = [min(c, 5_000) for c in CARDINALITY]
        self.effects = [rng.normal(0, 0.6, size=n) for n in informative]
        self.factors = [rng.normal(0, 0.7, size=(n, 4)) for n in informative]
        self.dense_weights = rng.normal(0, 0.4, size=len(DENSE))

    def raw_ids(self, ranks: np.ndarray) -> np.ndarray:
        return ((ranks * self.id_multiplier + self.id_offset) % (_PRIME - 1) + 1).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator):
        ranks = np.stack([(rng.zipf(1.3, size=n) - 1) % c for c in CARDINALITY], axis=1)
        z = rng.normal(0, 1, size=(n, len(DENSE)))
        dense = np.exp(z * 0.8 + np.array([5.0, 0.5, 2.0, 4.0, 1.0, 1.0])).astype(np.float32)
        logit = np.full(n, -2.2)
        for f, effects in enumerate(self.effects):
            known = ranks[:, f] < len(effects)
            logit[known] += effects[ranks[known, f]]
        for a, b in _INTERACTING_PAIRS:
            known = (ranks[:, a] < len(self.factors[a])) & (ranks[:, b] < len(self.factors[b]))
            dot = (self.factors[a][ranks[known, a]] * self.factors[b][ranks[known, b]]).sum(axis=1)
            logit[known] += 0.5 * dot
        logit += z @ self.dense_weights + 0.8 * z[:, 0] * z[:, 1] + 0.5 * np.sin(2 * z[:, 2])
        logit += 0.7 * z[:, 3] * (ranks[:, 5] < 3)  # device x session length
        probability = 1.0 / (1.0 + np.exp(-logit))
        clicks = (rng.random(n) < probability).astype(np.float32)
        return self.raw_ids(ranks), dense, probability, clicks


class CrossNetwork(nn.Module):
    """DCN-v2 cross layers: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l (explicit bounded-degree crosses)."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class DCN(nn.Module):
    def __init__(self, dense_mean: np.ndarray, dense_std: np.ndarray, dim: int = 8, cross_layers: int = 3) -> None:
        super().__init__()
        self.register_buffer("hash_a", torch.tensor(_HASH_A, dtype=torch.int64))
        self.register_buffer("hash_b", torch.tensor(_HASH_B, dtype=torch.int64))
        self.register_buffer("field_offset", torch.arange(len(FIELDS), dtype=torch.int64) * BUCKETS)
        self.register_buffer("dense_mean", torch.from_numpy(dense_mean.astype(np.float32)))
        self.register_buffer("dense_std", torch.from_numpy(dense_std.astype(np.float32)))
        self.embedding = nn.Embedding(len(FIELDS) * BUCKETS, dim)
        nn.init.normal_(self.embedding.weight, std=0.01)
        width = len(FIELDS) * dim + len(DENSE)
        self.cross = CrossNetwork(width, cross_layers)
        self.deep = nn.Sequential(nn.Linear(width, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.output = nn.Linear(width + 64, 1)

    def forward(self, sparse_ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        buckets = torch.remainder(torch.remainder(sparse_ids * self.hash_a + self.hash_b, _PRIME), BUCKETS)
        embedded = self.embedding(buckets + self.field_offset).flatten(1)
        scaled = (torch.log1p(dense) - self.dense_mean) / self.dense_std
        x0 = torch.cat([embedded, scaled], dim=1)
        return torch.sigmoid(self.output(torch.cat([self.cross(x0), self.deep(x0)], dim=1)))


class AdClickPrediction(CaseStudy):
    name = "ad-click-prediction"
    primary_metric = "auc"
    lower_is_better = frozenset({"log_loss", "bayes_log_loss", "log_loss_gap"})
    summary = "DCN-v2 (3 cross layers + 2-layer deep tower) over hashed sparse + log-scaled dense features"

    def __init__(self, *, small: bool, seed: int) -> None:
        super().__init__(small=small, seed=seed)
        self.config = {
            "train_rows": 80_000 if small else 1_000_000,
            "test_rows": 30_000 if small else 100_000,
            "epochs": 2 if small else 1,  # CTR models overfit after ~1 epoch over this much data
            "batch_size": 1024,
            "learning_rate": 2e-3,
            "embedding_dim": 8,
            "buckets_per_field": BUCKETS,
            "cross_layers": 3,
            "fields": list(FIELDS),
            "dense_features": list(DENSE),
        }

    def train(self, on_epoch: EpochCallback) -> None:
        c = self.config
        rng = seeded(self.seed)
        world = Generator(rng)
        self.train_sparse, self.train_dense, _, train_clicks = world.sample(c["train_rows"], rng)
        self.test_sparse, self.test_dense, self.test_probability, self.test_clicks = world.sample(c["test_rows"], rng)
        self.base_rate = float(train_clicks.mean())
        log_dense = np.log1p(self.train_dense)
        self.model = DCN(log_dense.mean(axis=0), log_dense.std(axis=0), c["embedding_dim"], c["cross_layers"])
        sparse, dense = torch.from_numpy(self.train_sparse), torch.from_numpy(self.train_dense)
        clicks = torch.from_numpy(train_clicks)[:, None]

        def loss(index: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy(self.model(sparse[index], dense[index]), clicks[index])

        fit(self.model, loss, rows=c["train_rows"], epochs=c["epochs"], batch_size=c["batch_size"],
            lr=c["learning_rate"], seed=self.seed, stage="dcn", on_epoch=on_epoch)  # fmt: skip

    def graphs(self) -> list[Graph]:
        example = {"sparse_ids": self.test_sparse[:64], "dense": self.test_dense[:64]}
        return [Graph("model", "model.onnx", self.model, example, ("click_probability",), "dynamic")]

    def _metrics(self, probability: np.ndarray) -> dict[str, float]:
        return {"auc": _metrics.roc_auc(self.test_clicks, probability),
                "log_loss": _metrics.log_loss(self.test_clicks, probability)}  # fmt: skip

    def evaluate(self, runners: Mapping[str, Runner], precision: Precision) -> Evaluation:
        p = runners["model"]({"sparse_ids": self.test_sparse, "dense": self.test_dense})["click_probability"][:, 0]
        metrics = self._metrics(p)
        bayes = self._metrics(self.test_probability)
        metrics |= {"bayes_auc": bayes["auc"], "bayes_log_loss": bayes["log_loss"],
                    "log_loss_gap": metrics["log_loss"] - bayes["log_loss"],
                    "calibration": float(p.mean() / self.test_clicks.mean())}  # fmt: skip
        reference = {"output:click_probability": _metrics.histogram(p, low=0.0, high=1.0)}
        for i, name in enumerate(DENSE):
            reference[f"input:{name}"] = _metrics.histogram(np.log1p(self.test_dense[:, i]))
            reference[f"input:{name}"]["transform"] = "log1p"
        clicks = self.test_clicks
        return Evaluation(metrics, reference, primary_on=lambda rows: _metrics.roc_auc(clicks[rows], p[rows]),
                          examples=len(clicks))

    def baseline_metrics(self) -> dict[str, float]:
        # The training click-through rate for everyone.
        return self._metrics(np.full(len(self.test_clicks), self.base_rate))

    def training_config(self) -> dict:
        return self.config

    def triton_steps(self) -> list[TritonStep]:
        return [
            TritonStep(
                self.name, "onnx",
                inputs=(("sparse_ids", "INT64", (len(FIELDS),)), ("dense", "FP32", (len(DENSE),))),
                outputs=(("click_probability", "FP32", (1,)),),
                graph_file="model.onnx",
            )
        ]  # fmt: skip
