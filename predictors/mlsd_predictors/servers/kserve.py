"""Predictor image entrypoint: one case-study model on KServe's ModelServer (v1 + v2, REST + gRPC).

    python -m mlsd_predictors.servers.kserve --case_study=ad-click-prediction --model_name=ad-ctr \\
        --model_dir=/mnt/models --http_port=8080 --grpc_port=8081 [--host=127.0.0.1] [--track=canary]

This is the ServingRuntime's container command (operator/mlsd_operator/builders/_kserve.py).
`--model_dir` is the variant's KServe layout (`<storageUri>/kserve/<precision>`, mounted by KServe's
storage initializer at /mnt/models) or an s3:// gs:// file:// URI downloaded at start. Flags are
parsed here only; KServe's own flags (workers, max_threads, ...) pass through.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kserve import model_server

from mlsd_predictors import CardError
from mlsd_predictors.pull import PullError, resolve_model_dir

from ._errors import VariantNotServable
from ._registry import CASE_STUDIES, model_class
from ._admission import AdmissionLimits
from ._server import PredictorServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(parents=[model_server.parser], prog="python -m mlsd_predictors.servers.kserve")
    parser.add_argument("--case_study", required=True, choices=CASE_STUDIES)
    parser.add_argument("--model_dir", required=True, help="variant directory or s3:// gs:// file:// URI")
    parser.add_argument("--host", default=os.environ.get("MLSD_HOST", "0.0.0.0"),
                        help="bind address (127.0.0.1 for local use)")
    parser.add_argument("--track", default=os.environ.get("MLSD_TRACK", "stable"),
                        help="metrics label: stable | canary | shadow")
    batch_size = os.environ.get("MLSD_MAX_BATCH_SIZE")     # spec.batching, as the operator renders it
    parser.add_argument("--max_batch_size", type=int, default=int(batch_size) if batch_size else None,
                        help="rows per request and per execution (default: $MLSD_MAX_BATCH_SIZE)")
    parser.add_argument("--max_latency_ms", type=float, default=float(os.environ.get("MLSD_MAX_LATENCY_MS", "0")),
                        help="wait to fill a batch (0: opportunistic; default: $MLSD_MAX_LATENCY_MS)")
    parser.add_argument("--ort_threads", type=int, default=int(os.environ.get("MLSD_ORT_THREADS", "0")),
                        help="onnxruntime intra-op threads (0: one per core)")
    parser.add_argument("--compute_workers", type=int, default=-1,
                        help="threads running the model; 0: inline on the event loop; -1 (default): inline when "
                             "the card times a batch of 64 under 1 ms, else one thread")
    limits = AdmissionLimits.from_env()   # MLSD_MAX_INFLIGHT, MLSD_MAX_READING, ... (the flags win)
    parser.add_argument("--max_request_bytes", type=int, default=limits.max_request_bytes,
                        help="largest request body (413 above it; gRPC: RESOURCE_EXHAUSTED)")
    parser.add_argument("--max_inflight", type=int, default=limits.max_inflight,
                        help="infer requests admitted at once; more get 503 + Retry-After (0: unlimited)")
    parser.add_argument("--max_reading", type=int, default=limits.max_reading,
                        help="REST request bodies received at once (0: unlimited)")
    parser.add_argument("--body_timeout_s", type=float, default=limits.body_timeout_s,
                        help="longest wait for a request body (408 after it)")
    parser.add_argument("--retry_after_s", type=int, default=limits.retry_after_s,
                        help="the Retry-After a refused client is given")
    parser.add_argument("--access_log", action="store_true",
                        help="log every request (off: KServe logs three lines per request, a measurable cost)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    cls = model_class(args.case_study)
    try:
        model_dir = resolve_model_dir(args.model_dir)
    except PullError as err:
        sys.exit(f"mlsd predictor: refusing to serve: --model_dir={args.model_dir}: {err}")
    model = cls(args.model_name, model_dir, track=args.track,
                max_batch_size=args.max_batch_size, max_latency_ms=args.max_latency_ms,
                ort_threads=args.ort_threads, workers=args.compute_workers)
    try:
        model.load()
    except (VariantNotServable, CardError, FileNotFoundError) as err:
        sys.exit(f"mlsd predictor: refusing to serve: {err}")
    limits = AdmissionLimits(max_inflight=args.max_inflight, max_reading=args.max_reading,
                             body_timeout_s=args.body_timeout_s, max_request_bytes=args.max_request_bytes,
                             retry_after_s=args.retry_after_s)
    server = PredictorServer(host=args.host, limits=limits, http_port=args.http_port,
                             grpc_port=args.grpc_port, workers=1, max_threads=args.max_threads,
                             enable_grpc=args.enable_grpc, enable_latency_logging=False)
    if not args.access_log:   # after ModelServer configured KServe's logging
        for name in ("kserve.trace", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
