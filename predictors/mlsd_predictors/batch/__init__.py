"""Batch prediction (`spec.batch`, `mlsd batch`): the predictor's own code over a dataset, results
written so that a run is complete or absent (docs/patterns.md, `spec.batch`)."""

from ._output import BatchOutput, RunManifest, latest_run
from ._run import BatchError, BatchJob, ShardResult, run_shard

__all__ = ["BatchError", "BatchJob", "BatchOutput", "RunManifest", "ShardResult", "latest_run", "run_shard"]
