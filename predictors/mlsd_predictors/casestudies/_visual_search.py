"""Visual search: a small CNN image encoder trained contrastively, plus an ANN index over a catalogue.

Known structure: every generated image has a (shape, colour) class (see `_shapes`). Training never
sees the classes: positives are two augmented views of the same generated object (SimCLR-style
InfoNCE with in-batch negatives), so same-class retrieval measures what the encoder learnt itself.
Serving: `model.onnx` maps images to L2-normalised embeddings; `catalogue.usearch` (keys =
catalogue ids) answers the nearest-neighbour query; `catalogue.json` names each id's class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _ann, _metrics, _shapes
from ._base import Artifact, CaseStudy, EpochCallback, Evaluation, Graph, Precision, Runner, TritonStep
from ._training import fit, seeded

EMBEDDING_DIM = 64
TOP_K = 10


class ImageEncoder(nn.Module):
    """Three conv blocks, global average pooling, a linear projection, L2 normalisation."""

    def __init__(self, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.projection = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.features(image)), dim=1)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `a` should pick row i of `b` among all rows, and vice versa."""
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class VisualSearch(CaseStudy):
    name = "visual-search"
    primary_metric = "precision@10"
    summary = "CNN image encoder (contrastive, InfoNCE) + usearch HNSW index over a catalogue"

    def __init__(self, *, small: bool, seed: int) -> None:
        super().__init__(small=small, seed=seed)
        self.config = {
            "train_images": 1200 if small else 6000,
            "catalogue_images": 500 if small else 3000,
            "query_images": 150 if small else 600,
            "epochs": 6 if small else 10,
            "batch_size": 64 if small else 256,
            "learning_rate": 3e-3,
            "temperature": 0.1,
            "embedding_dim": EMBEDDING_DIM,
            "top_k": TOP_K,
            "ann": {"library": "usearch", "metric": "cos", "connectivity": _ann.CONNECTIVITY,
                    "expansion_add": _ann.EXPANSION_ADD, "expansion_search": _ann.EXPANSION_SEARCH},
        }  # fmt: skip

    def train(self, on_epoch: EpochCallback) -> None:
        rng = seeded(self.seed)
        c = self.config
        self.train_set = _shapes.generate(c["train_images"], rng)
        self.catalogue = _shapes.generate(c["catalogue_images"], rng)
        self.queries = _shapes.generate(c["query_images"], rng)
        self.catalogue_ids = np.arange(c["catalogue_images"], dtype=np.int64)

        self.encoder = ImageEncoder()
        view_rng = np.random.default_rng(self.seed + 1)

        def loss(index: torch.Tensor) -> torch.Tensor:
            a = self.encoder(_shapes.views(self.train_set, index.numpy(), view_rng))
            b = self.encoder(_shapes.views(self.train_set, index.numpy(), view_rng))
            return info_nce(a, b, c["temperature"])

        fit(self.encoder, loss, rows=c["train_images"], epochs=c["epochs"], batch_size=c["batch_size"],
            lr=c["learning_rate"], seed=self.seed, stage="encoder", on_epoch=on_epoch)  # fmt: skip

    def graphs(self) -> list[Graph]:
        calibration = tuple({"image": self.train_set.images[i : i + 64]} for i in range(0, 512, 64))
        return [
            Graph("model", "model.onnx", self.encoder, {"image": self.queries.images[:64]},
                  ("embedding",), "static", calibration)
        ]  # fmt: skip

    def _retrieval(self, encode, precision: str):
        catalogue_embeddings = encode(self.catalogue.images)
        query_embeddings = encode(self.queries.images)
        index = _ann.build_index(self.catalogue_ids, catalogue_embeddings, precision)
        ann_ids, ann_scores = _ann.ann_search(index, query_embeddings, TOP_K)
        exact_ids = _ann.exact_search(self.catalogue_ids, catalogue_embeddings, query_embeddings, TOP_K)
        return index, ann_ids, ann_scores, exact_ids

    def evaluate(self, runners: Mapping[str, Runner], precision: Precision) -> Evaluation:
        def encode(images: np.ndarray) -> np.ndarray:
            return runners["model"]({"image": images})["embedding"]

        index, ann_ids, ann_scores, exact_ids = self._retrieval(encode, precision)
        labels = self.catalogue.label
        metrics = {
            "precision@10": _metrics.precision_at_k(labels[ann_ids], self.queries.label),
            "exact_precision@10": _metrics.precision_at_k(labels[exact_ids], self.queries.label),
            "ann_recall@10": _ann.ann_recall(ann_ids, exact_ids),
        }
        reference = {"output:top1_similarity": _metrics.histogram(ann_scores[:, 0], low=-1.0, high=1.0)}
        for channel, name in enumerate("rgb"):
            reference[f"input:image_mean_{name}"] = _metrics.histogram(
                self.queries.images[:, channel].mean(axis=(1, 2)), low=0.0, high=1.0
            )
        per_query = (labels[ann_ids] == self.queries.label[:, None]).mean(axis=1)
        return Evaluation(metrics, reference, [
            Artifact("catalogue.usearch", lambda path: index.save(str(path))),
            Artifact("catalogue.json", self._write_catalogue),
        ], primary_on=lambda rows: float(per_query[rows].mean()), examples=len(per_query))  # fmt: skip

    def _write_catalogue(self, path: Path) -> None:
        path.write_text(json.dumps({
            "ids": self.catalogue_ids.tolist(),
            "shape": [_shapes.SHAPES[s] for s in self.catalogue.shape],
            "colour": [_shapes.COLOURS[c] for c in self.catalogue.colour],
        }))  # fmt: skip

    def baseline_metrics(self) -> dict[str, float]:
        # Chance, and exact search on raw 8x8 average-pooled pixels (what a model must beat).
        def pixels(images: np.ndarray) -> np.ndarray:
            pooled = F.avg_pool2d(torch.from_numpy(images), 4).flatten(1).numpy()
            return pooled - pooled.mean(axis=1, keepdims=True)

        exact = _ann.exact_search(self.catalogue_ids, pixels(self.catalogue.images), pixels(self.queries.images), TOP_K)
        classes = len(_shapes.SHAPES) * len(_shapes.COLOURS)
        return {
            "precision@10": 1.0 / classes,
            "pixels_precision@10": _metrics.precision_at_k(self.catalogue.label[exact], self.queries.label),
        }

    def training_config(self) -> dict:
        return self.config

    def triton_steps(self) -> list[TritonStep]:
        return [
            TritonStep(
                self.name, "ann",
                inputs=(("image", "FP32", (3, _shapes.IMAGE_SIZE, _shapes.IMAGE_SIZE)),),
                outputs=(("embedding", "FP32", (EMBEDDING_DIM,)), ("neighbour_ids", "INT64", (TOP_K,)),
                         ("neighbour_scores", "FP32", (TOP_K,))),
                graph_file="model.onnx", index_file="catalogue.usearch",
                parameters={"embedding_output": "embedding", "top_k": str(TOP_K),
                            "ids_output": "neighbour_ids", "scores_output": "neighbour_scores"},
            )
        ]  # fmt: skip
