"""Video recommendation: two-tower candidate generation + ANN over videos, then a ranking model.

Known structure: each user has a latent topic preference (Dirichlet, peaked), a language, a
preferred duration and an activity level; each video has a topic, language, duration, quality and
freshness. The true watch probability is

    p(u, v) = sigmoid(5 pref_u . topic_v + 1.5 [lang_u = lang_v] + 0.8 [dur_u = dur_v]
                      + 0.5 quality_v + 0.6 fresh_v * active_u - 4.5)

Topic preferences are never observed: the towers learn them from watch logs, and the user features
carry the topic mix of the user's logged watches (a history feature, as a feature store would). Training logs are
impressions from a biased previous system (Gumbel top-k on the true logit) plus random ones, each
watched with p(u, v). Evaluation uses the ground truth over the whole catalogue: recall of each
user's true top videos in the retrieved candidates, and NDCG@10 of the final ranking with
p(u, v) as gain (ideal = the user's best 10 videos anywhere in the catalogue).

Serving: `retrieval.onnx` (user tower) -> `videos.usearch` (keys = video ids = catalogue rows) ->
`model.onnx` (ranking: user + candidate ids -> watch probability; video features are baked in).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _ann, _metrics
from ._base import Artifact, CaseStudy, EpochCallback, Evaluation, Graph, Precision, Runner, TritonStep
from ._training import fit, predict, seeded

TOPICS, LANGUAGES, DURATIONS = 8, 3, 3
USER_FEATURES = LANGUAGES + DURATIONS + 1 + TOPICS  # language, duration one-hots, activity, watch-topic mix
VIDEO_FEATURES = TOPICS + LANGUAGES + DURATIONS + 2  # topic, language, duration one-hots, quality, freshness
EMBEDDING_DIM = 32


def _one_hot(index: np.ndarray, size: int) -> np.ndarray:
    return np.eye(size, dtype=np.float32)[index]


class World:
    """Users, videos and the true watch probability between them."""

    def __init__(self, users: int, videos: int, rng: np.random.Generator) -> None:
        self.preference = rng.dirichlet(np.full(TOPICS, 0.2), size=users).astype(np.float32)
        self.user_language = rng.integers(0, LANGUAGES, size=users)
        self.user_duration = rng.integers(0, DURATIONS, size=users)
        self.activity = rng.uniform(0, 1, size=users).astype(np.float32)
        self.topic = rng.integers(0, TOPICS, size=videos)
        self.video_language = rng.choice(LANGUAGES, size=videos, p=[0.5, 0.3, 0.2])
        self.video_duration = rng.integers(0, DURATIONS, size=videos)
        self.quality = rng.normal(0, 1, size=videos).astype(np.float32)
        self.freshness = rng.uniform(0, 1, size=videos).astype(np.float32)
        observed_quality = self.quality + rng.normal(0, 0.5, size=videos).astype(np.float32)
        self.video_features = np.concatenate([
            _one_hot(self.topic, TOPICS), _one_hot(self.video_language, LANGUAGES),
            _one_hot(self.video_duration, DURATIONS), observed_quality[:, None], self.freshness[:, None],
        ], axis=1)  # fmt: skip

    def logits(self, users: np.ndarray) -> np.ndarray:
        """True logit for each given user against every video, [len(users), videos]."""
        return (
            5.0 * self.preference[users][:, self.topic]
            + 1.5 * (self.user_language[users][:, None] == self.video_language[None, :])
            + 0.8 * (self.user_duration[users][:, None] == self.video_duration[None, :])
            + 0.5 * self.quality[None, :]
            + 0.6 * self.activity[users][:, None] * self.freshness[None, :]
            - 4.5
        )

    def watch_probability(self, users: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(users)))

    def impressions(self, biased: int, random: int, rng: np.random.Generator):
        """(user, video, watched) logs: Gumbel top-k on the true logit (a previous recommender that
        was decent) plus uniformly random videos, each watched with the true probability."""
        users = np.arange(len(self.preference))
        logits = self.logits(users)
        gumbel = logits - np.log(-np.log(rng.uniform(1e-9, 1, size=logits.shape)))
        shown = np.concatenate([
            np.argpartition(-gumbel, biased, axis=1)[:, :biased],
            rng.integers(0, logits.shape[1], size=(len(users), random)),
        ], axis=1)  # fmt: skip
        user = np.repeat(users, shown.shape[1])
        video = shown.ravel()
        p = 1.0 / (1.0 + np.exp(-logits[user, video]))
        watched = (rng.random(p.shape) < p).astype(np.float32)
        self._set_user_features(user, video, watched)
        return user, video, watched

    def _set_user_features(self, user: np.ndarray, video: np.ndarray, watched: np.ndarray) -> None:
        users = len(self.preference)
        history = np.zeros((users, TOPICS), dtype=np.float32)
        np.add.at(history, (user, self.topic[video]), watched)
        history = (history + 0.1) / (history.sum(axis=1, keepdims=True) + 0.1 * TOPICS)
        self.user_features = np.concatenate([
            _one_hot(self.user_language, LANGUAGES), _one_hot(self.user_duration, DURATIONS),
            self.activity[:, None], history,
        ], axis=1).astype(np.float32)  # fmt: skip


class UserTower(nn.Module):
    def __init__(self, users: int) -> None:
        super().__init__()
        self.users = users
        self.embedding = nn.Embedding(users, EMBEDDING_DIM)
        self.mlp = nn.Sequential(nn.Linear(EMBEDDING_DIM + USER_FEATURES, 64), nn.ReLU(), nn.Linear(64, EMBEDDING_DIM))

    def forward(self, user_id: torch.Tensor, user_features: torch.Tensor) -> torch.Tensor:
        # Ids are hashed into the table (mod) so an unknown id still gets a vector.
        embedded = self.embedding(torch.remainder(user_id[:, 0], self.users))
        return F.normalize(self.mlp(torch.cat([embedded, user_features], dim=1)), dim=1)


class VideoTower(nn.Module):
    def __init__(self, videos: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(videos, EMBEDDING_DIM)
        self.mlp = nn.Sequential(nn.Linear(EMBEDDING_DIM + VIDEO_FEATURES, 64), nn.ReLU(), nn.Linear(64, EMBEDDING_DIM))

    def forward(self, video_id: torch.Tensor, video_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(torch.cat([self.embedding(video_id), video_features], dim=1)), dim=1)


class Ranker(nn.Module):
    """Scores (user, candidate) pairs: ids and features of both sides plus explicit match features."""

    def __init__(self, users: int, video_features: np.ndarray, dim: int = 16) -> None:
        super().__init__()
        self.users = users
        self.register_buffer("video_features", torch.from_numpy(video_features))
        self.user_embedding = nn.Embedding(users, dim)
        self.video_embedding = nn.Embedding(len(video_features), dim)
        width = dim * 3 + USER_FEATURES + VIDEO_FEATURES + 3
        self.mlp = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, user_id: torch.Tensor, user_features: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
        candidates = candidate_ids.shape[1]
        user = self.user_embedding(torch.remainder(user_id[:, 0], self.users)).unsqueeze(1).expand(-1, candidates, -1)
        features = user_features.unsqueeze(1).expand(-1, candidates, -1)
        video = self.video_embedding(candidate_ids)
        video_features = self.video_features[candidate_ids]
        def dot(user_slice: slice, video_slice: slice) -> torch.Tensor:
            return (features[..., user_slice] * video_features[..., video_slice]).sum(-1, keepdim=True)

        t, d, a = TOPICS, LANGUAGES, LANGUAGES + DURATIONS + 1  # offsets of the one-hot blocks
        crosses = [
            dot(slice(0, d), slice(t, t + d)),  # language match
            dot(slice(d, d + DURATIONS), slice(t + d, t + d + DURATIONS)),  # duration match
            dot(slice(a, a + TOPICS), slice(0, t)),  # user's watch-topic mix . video topic
        ]
        x = torch.cat([user, video, user * video, features, video_features, *crosses], dim=-1)
        return torch.sigmoid(self.mlp(x).squeeze(-1))


class VideoRecommendation(CaseStudy):
    name = "video-recommendation"
    primary_metric = "ndcg@10"
    summary = "two-tower retrieval + usearch ANN over videos, then an MLP ranker over (user, candidate)"

    def __init__(self, *, small: bool, seed: int) -> None:
        super().__init__(small=small, seed=seed)
        self.config = {
            "users": 600 if small else 3000,
            "videos": 400 if small else 2000,
            "biased_impressions_per_user": 30,
            "random_impressions_per_user": 10,
            "eval_users": 300 if small else 800,
            "candidates": 50 if small else 100,
            "relevant_per_user": 10 if small else 20,
            "tower_epochs": 20 if small else 20,
            "ranker_epochs": 10 if small else 10,
            "batch_size": 512,
            "learning_rate": 3e-3,
            "temperature": 0.1,
            "embedding_dim": EMBEDDING_DIM,
            "ann": {"library": "usearch", "metric": "cos", "connectivity": _ann.CONNECTIVITY,
                    "expansion_add": _ann.EXPANSION_ADD, "expansion_search": _ann.EXPANSION_SEARCH},
        }  # fmt: skip

    def train(self, on_epoch: EpochCallback) -> None:
        c = self.config
        rng = seeded(self.seed)
        self.world = w = World(c["users"], c["videos"], rng)
        user, video, watched = w.impressions(c["biased_impressions_per_user"], c["random_impressions_per_user"], rng)
        self.popularity = np.bincount(video[watched > 0], minlength=c["videos"])
        self.eval_users = np.sort(rng.choice(c["users"], size=c["eval_users"], replace=False))
        self.video_ids = np.arange(c["videos"], dtype=np.int64)

        self.user_tower, self.video_tower = UserTower(c["users"]), VideoTower(c["videos"])
        pairs_user = torch.from_numpy(user[watched > 0])[:, None]
        pairs_video = torch.from_numpy(video[watched > 0])
        user_features, video_features = torch.from_numpy(w.user_features), torch.from_numpy(w.video_features)
        towers = nn.ModuleList([self.user_tower, self.video_tower])

        def tower_loss(index: torch.Tensor) -> torch.Tensor:
            u, v = pairs_user[index], pairs_video[index]
            logits = self.user_tower(u, user_features[u[:, 0]]) @ self.video_tower(v, video_features[v]).T
            # In-batch softmax; a video appearing twice in the batch is not its own negative.
            logits = logits.masked_fill((v[None, :] == v[:, None]) & ~torch.eye(len(v), dtype=torch.bool), -1e4)
            return F.cross_entropy(logits / c["temperature"], torch.arange(len(v)))

        fit(towers, tower_loss, rows=len(pairs_video), epochs=c["tower_epochs"], batch_size=c["batch_size"],
            lr=c["learning_rate"], seed=self.seed, stage="two-tower", on_epoch=on_epoch)  # fmt: skip

        self.ranker = Ranker(c["users"], w.video_features)
        log_user, log_video = torch.from_numpy(user)[:, None], torch.from_numpy(video)[:, None]
        log_watched = torch.from_numpy(watched)[:, None]

        def ranker_loss(index: torch.Tensor) -> torch.Tensor:
            u = log_user[index]
            scores = self.ranker(u, user_features[u[:, 0]], log_video[index])
            return F.binary_cross_entropy(scores, log_watched[index])

        fit(self.ranker, ranker_loss, rows=len(user), epochs=c["ranker_epochs"], batch_size=c["batch_size"],
            lr=c["learning_rate"], seed=self.seed, stage="ranker", on_epoch=on_epoch)  # fmt: skip
        self.video_embeddings = predict(self.video_tower, self.video_ids, w.video_features)[0]

    def _user_inputs(self) -> dict[str, np.ndarray]:
        users = self.eval_users
        return {"user_id": users[:, None].astype(np.int64), "user_features": self.world.user_features[users]}

    def graphs(self) -> list[Graph]:
        inputs = {k: v[:64] for k, v in self._user_inputs().items()}
        shape = (64, self.config["candidates"])
        candidates = np.random.default_rng(self.seed).integers(0, len(self.video_ids), size=shape)
        return [
            Graph("model", "model.onnx", self.ranker, {**inputs, "candidate_ids": candidates}, ("scores",), "dynamic",
                  variable_axes={"candidate_ids": (1,), "scores": (1,)}),
            Graph("retrieval", "retrieval.onnx", self.user_tower, inputs, ("user_embedding",), "dynamic"),
        ]

    def evaluate(self, runners: Mapping[str, Runner], precision: Precision) -> Evaluation:
        c, users = self.config, self._user_inputs()
        k = c["candidates"]
        truth = self.world.watch_probability(self.eval_users)
        relevant = np.argsort(-truth, axis=1)[:, : c["relevant_per_user"]]
        user_embeddings = runners["retrieval"](users)["user_embedding"]
        index = _ann.build_index(self.video_ids, self.video_embeddings, precision)
        candidates, _ = _ann.ann_search(index, user_embeddings, k)
        exact = _ann.exact_search(self.video_ids, self.video_embeddings, user_embeddings, k)
        scores = runners["model"]({**users, "candidate_ids": candidates})["scores"]
        ranked = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable"), axis=1)
        gains = lambda ids: np.take_along_axis(truth, ids, axis=1)  # noqa: E731
        metrics = {
            "ndcg@10": _metrics.ndcg_at_k(gains(ranked), truth, 10),
            f"recall@{k}": _metrics.recall_at_k(candidates, relevant),
            f"ann_recall@{k}": _ann.ann_recall(candidates, exact),
            "retrieval_only_ndcg@10": _metrics.ndcg_at_k(gains(candidates), truth, 10),
        }
        features = users["user_features"]
        reference = {
            "output:score": _metrics.histogram(scores, low=0.0, high=1.0),
            "input:activity": _metrics.histogram(features[:, LANGUAGES + DURATIONS], low=0.0, high=1.0),
        }
        for language in range(LANGUAGES):
            reference[f"input:language_{language}"] = _metrics.histogram(features[:, language], low=0.0, high=1.0, bins=2)
        ranked_gains = gains(ranked)
        return Evaluation(metrics, reference, [
            Artifact("videos.usearch", lambda path: index.save(str(path))),
            Artifact("videos.json", self._write_videos),
        ], primary_on=lambda rows: _metrics.ndcg_at_k(ranked_gains[rows], truth[rows], 10),
            examples=len(truth))  # fmt: skip

    def _write_videos(self, path: Path) -> None:
        path.write_text(json.dumps({"ids": self.video_ids.tolist(), "candidates": self.config["candidates"]}))

    def baseline_metrics(self) -> dict[str, float]:
        # Most-watched videos in the logs, the same list for everyone.
        c = self.config
        truth = self.world.watch_probability(self.eval_users)
        top = np.argsort(-self.popularity, kind="stable")[: c["candidates"]]
        popular = np.broadcast_to(top, (len(truth), c["candidates"]))
        relevant = np.argsort(-truth, axis=1)[:, : c["relevant_per_user"]]
        return {
            "ndcg@10": _metrics.ndcg_at_k(np.take_along_axis(truth, popular, axis=1), truth, 10),
            f"recall@{c['candidates']}": _metrics.recall_at_k(popular, relevant),
        }

    def training_config(self) -> dict:
        return self.config

    def triton_steps(self) -> list[TritonStep]:
        k = self.config["candidates"]
        user = (("user_id", "INT64", (1,)), ("user_features", "FP32", (USER_FEATURES,)))
        retrieval, ranking = f"{self.name}-retrieval", f"{self.name}-ranking"
        same = lambda *names: {n: n for n in names}  # noqa: E731
        return [
            TritonStep(retrieval, "ann", inputs=user,
                       outputs=(("candidate_ids", "INT64", (k,)), ("retrieval_scores", "FP32", (k,))),
                       graph_file="retrieval.onnx", index_file="videos.usearch",
                       parameters={"embedding_output": "user_embedding", "top_k": str(k),
                                   "ids_output": "candidate_ids", "scores_output": "retrieval_scores"}),
            TritonStep(ranking, "onnx", inputs=(*user, ("candidate_ids", "INT64", (-1,))),
                       outputs=(("scores", "FP32", (-1,)),), graph_file="model.onnx"),
            TritonStep(self.name, "ensemble", inputs=user,
                       outputs=(("candidate_ids", "INT64", (k,)), ("scores", "FP32", (k,))),
                       steps=((retrieval, same("user_id", "user_features"), same("candidate_ids")),
                              (ranking, same("user_id", "user_features", "candidate_ids"), same("scores")))),
        ]  # fmt: skip
