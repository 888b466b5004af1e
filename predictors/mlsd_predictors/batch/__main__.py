"""The batch Job's container command (operator/mlsd_operator/builders/_batch.py):

    python -m mlsd_predictors.batch --case-study=video-recommendation --model-dir=/mnt/pvc/models/... \
        --input=/mnt/pvc/data/users.npz --output=/mnt/pvc/data/recommendations --shards=4

The shard is the pod's JOB_COMPLETION_INDEX (Indexed Job) and the run id the Job's name, so a
retried pod redoes its own shard of the same run. Exit 1 with the reason on a refused input or model.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ._run import BatchError, BatchJob, run_shard
from mlsd_predictors.pull import PullError, resolve_model_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlsd_predictors.batch")
    parser.add_argument("--case-study", required=True)
    parser.add_argument("--model-dir", required=True, help="variant directory (KServe layout) or s3:// gs:// URI")
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--run", default=os.environ.get("MLSD_BATCH_RUN"), help="run id (default: $MLSD_BATCH_RUN)")
    parser.add_argument("--shard", type=int, default=int(os.environ.get("JOB_COMPLETION_INDEX", "0")))
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--keep-runs", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.run:
        sys.exit("mlsd batch: no run id: pass --run or set MLSD_BATCH_RUN")
    try:
        model_dir = resolve_model_dir(args.model_dir)
    except PullError as err:
        sys.exit(f"mlsd batch: --model-dir={args.model_dir}: {err}")
    job = BatchJob(args.case_study, model_dir, args.input, args.output, args.run,
                   args.batch_size, args.shards, args.keep_runs)
    try:
        result = run_shard(job, args.shard)
    except BatchError as error:
        sys.exit(f"mlsd batch: {error}")
    if result.skipped:
        logging.info("run %s is already complete; shard %d has nothing to do", job.run, args.shard)
    else:
        logging.info("run %s shard %d/%d: %d rows in %.1f s%s", job.run, args.shard, args.shards, result.rows,
                     result.seconds, "; run committed" if result.committed else "")


if __name__ == "__main__":
    main()
