"""Seeded, CPU-friendly training loop shared by the case studies."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from ._base import EpochCallback

# One thread: reproducible across machines (no thread-count-dependent reductions) and, on the
# shared 2-core builders, faster than two threads competing with other jobs. Override with
# MLSD_TRAIN_THREADS.
TRAIN_THREADS = int(os.environ.get("MLSD_TRAIN_THREADS", "1"))


def seeded(seed: int) -> np.random.Generator:
    """Seeds torch and returns the numpy generator for data; same seed, same data and weights."""
    torch.manual_seed(seed)
    torch.set_num_threads(TRAIN_THREADS)
    return np.random.default_rng(seed)


def fit(
    model: torch.nn.Module,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    rows: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    stage: str,
    on_epoch: EpochCallback,
    weight_decay: float = 0.0,
) -> list[float]:
    """Adam over shuffled mini-batches of row indices; `batch_loss(indices)` returns the loss.

    Returns the mean loss per epoch.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(rows, generator=generator)
        total, batches = 0.0, 0
        for start in range(0, rows, batch_size):
            index = order[start : start + batch_size]
            if index.numel() < 2:
                continue
            loss = batch_loss(index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        history.append(total / max(batches, 1))
        on_epoch(stage, epoch + 1, epochs, history[-1])
    model.eval()
    return history


@torch.no_grad()
def predict(module: torch.nn.Module, *inputs: np.ndarray, batch_size: int = 2048) -> list[np.ndarray]:
    """Runs a module in eval mode over numpy inputs in batches; returns numpy outputs."""
    module.eval()
    pieces: list[list[np.ndarray]] = []
    for start in range(0, len(inputs[0]), batch_size):
        out = module(*(torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])) for x in inputs))
        out = out if isinstance(out, tuple) else (out,)
        pieces.append([o.numpy() for o in out])
    return [np.concatenate(parts) for parts in zip(*pieces, strict=True)]
