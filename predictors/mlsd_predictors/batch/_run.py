"""One shard of a batch run: the serving model (`CaseStudyModel`: same card checks, same input
checks, same graphs) over a contiguous slice of the input rows, written as one part.

In a cluster every pod of the Indexed Job runs one shard (JOB_COMPLETION_INDEX); `mlsd batch` runs
them one after another. Whoever writes the last part commits the run (see `_output`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._output import BatchOutput, RunManifest, file_sha256


class BatchError(RuntimeError):
    """The run cannot proceed as configured (bad input file, model refused); nothing is committed."""


@dataclass(frozen=True)
class BatchJob:
    case_study: str
    model_dir: Path
    input: Path
    output: Path
    run: str
    batch_size: int = 256
    shards: int = 1
    keep_runs: int = 3


@dataclass(frozen=True)
class ShardResult:
    shard: int
    rows: int
    seconds: float
    committed: bool
    skipped: bool = False         # the run was already committed: nothing to do


def _load_model(job: BatchJob):
    from mlsd_predictors.servers._registry import model_class

    model = model_class(job.case_study)(f"{job.case_study}-batch", job.model_dir, track="batch",
                                        max_batch_size=job.batch_size, workers=0, cache_size=0)
    try:
        model.load()
    except Exception as error:
        raise BatchError(f"model at {job.model_dir} refused: {error}") from error
    return model


def _inputs(job: BatchJob, signature) -> dict[str, np.ndarray]:
    try:
        data = np.load(job.input, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BatchError(f"cannot read {job.input} as .npz: {error}") from error
    with data:
        names = [spec.name for spec in signature.inputs]
        missing = [n for n in names if n not in data.files]
        if missing:
            raise BatchError(f"{job.input}: missing array(s) {', '.join(missing)}; this model takes "
                             f"{', '.join(names)} (found {', '.join(data.files) or 'none'})")
        arrays = {n: data[n] for n in names}
    for spec in signature.inputs:
        if not np.can_cast(arrays[spec.name].dtype, spec.numpy_dtype, "same_kind"):
            raise BatchError(f"{job.input}: {spec.name} is {arrays[spec.name].dtype}, the model takes "
                             f"{spec.datatype}; convert it (e.g. astype) before the run")
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1:
        raise BatchError(f"{job.input}: arrays differ in rows: " + ", ".join(f"{n} {len(a)}" for n, a in arrays.items()))
    return arrays


def shard_range(rows: int, shard: int, shards: int) -> tuple[int, int]:
    return rows * shard // shards, rows * (shard + 1) // shards


def run_shard(job: BatchJob, shard: int, progress: Callable[[int], None] | None = None) -> ShardResult:
    from mlsd_predictors.servers._signature import RawTensor, check_inputs

    if not 0 <= shard < job.shards:
        raise BatchError(f"shard {shard} is outside 0..{job.shards - 1}")
    out = BatchOutput(job.output)
    if out.committed(job.run):
        return ShardResult(shard, 0, 0.0, committed=False, skipped=True)
    started = time.perf_counter()
    model = _load_model(job)
    signature = model.signature
    arrays = _inputs(job, signature)
    total = len(next(iter(arrays.values())))
    start, stop = shard_range(total, shard, job.shards)
    chunks: dict[str, list[np.ndarray]] = {spec.name: [] for spec in signature.outputs}
    for first in range(start, stop, job.batch_size):
        last = min(first + job.batch_size, stop)
        tensors = [RawTensor(spec.name, spec.datatype, [last - first, *arrays[spec.name].shape[1:]],
                             lambda a=arrays[spec.name], spec=spec: np.ascontiguousarray(a[first:last], spec.numpy_dtype))
                   for spec in signature.inputs]
        try:
            feeds = check_inputs(tensors, signature)
        except Exception as error:
            raise BatchError(f"{job.input} rows {first}..{last - 1}: {error}") from error
        results = model.compute(feeds)
        for name in chunks:
            chunks[name].append(results[name])
        if progress:
            progress(last - first)
    parts = {spec.name: (np.concatenate(chunks[spec.name]) if chunks[spec.name]
                         else np.zeros((0, *spec.shape), spec.numpy_dtype)) for spec in signature.outputs}
    out.write_part(job.run, shard, job.shards, parts)
    committed = False
    if out.parts_present(job.run, job.shards):
        artifacts = {}
        if job.case_study == "visual-search":
            artifacts = _catalogue_index(out, job, model, arrays)
        manifest = RunManifest(
            run=job.run, case_study=job.case_study, model_version=model.version, precision=model.card.precision,
            input=str(job.input), input_sha256=file_sha256(job.input), rows=total, shards=job.shards,
            batch_size=job.batch_size,
            outputs={s.name: {"datatype": s.datatype, "shape": list(s.shape)} for s in signature.outputs},
            artifacts=artifacts)
        committed = out.commit(manifest, job.keep_runs)
    model.stop()
    return ShardResult(shard, stop - start, time.perf_counter() - started, committed)


CATALOGUE_INDEX = "catalogue.usearch"


def _catalogue_index(out: BatchOutput, job: BatchJob, model, inputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Visual search over a new image catalogue: the embeddings of every image, as one ANN index built
    exactly as `mlsd build` builds the served one (same HNSW settings, keys, precision). Keys are the
    input's `item_ids` array when it has one, else row numbers. A model version serving this
    catalogue takes the file in place of its own catalogue.usearch."""
    from mlsd_predictors._ann_index import build_index

    embeddings = out.read_parts(job.run, job.shards)["embedding"]
    ids = inputs.get("item_ids")
    if ids is None:
        with np.load(job.input, allow_pickle=False) as data:
            ids = data["item_ids"] if "item_ids" in data.files else np.arange(len(embeddings))
    if len(ids) != len(embeddings) or len(np.unique(ids)) != len(ids) or (np.asarray(ids) < 0).any():
        raise BatchError(f"{job.input}: item_ids must hold {len(embeddings)} distinct non-negative ids")
    index = build_index(np.asarray(ids, dtype=np.int64), embeddings, model.card.precision)
    path = out.staging / job.run / CATALOGUE_INDEX
    tmp = path.with_name(f".{path.name}.tmp")
    index.save(str(tmp))
    tmp.replace(path)
    return {CATALOGUE_INDEX: {"items": int(len(ids)), "ndim": int(embeddings.shape[1]),
                              "precision": model.card.precision, "sha256": file_sha256(path)}}


def run_all(job: BatchJob, progress: Callable[[int], None] | None = None) -> list[ShardResult]:
    """Every shard in turn (the local `mlsd batch`); the last one commits."""
    return [run_shard(job, shard, progress) for shard in range(job.shards)]


def input_rows(path: Path) -> int:
    with np.load(path, allow_pickle=False) as data:
        return len(data[data.files[0]]) if data.files else 0
