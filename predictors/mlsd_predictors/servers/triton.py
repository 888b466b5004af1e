"""Run a real tritonserver on model repositories from `mlsd build`, without the NGC image.

    python -m mlsd_predictors.servers.triton REPOSITORY [REPOSITORY ...] \\
        [--host 127.0.0.1] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002] [--track stable]

Uses the tritonserver binary inside the nvidia-pytriton wheel (Python backend only: ONNX models
run through the onnxruntime shim, see `_triton.py`), or MLSD_TRITONSERVER if set. Stops on
Ctrl-C/SIGTERM, draining in-flight requests.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ._triton import TritonFailed, TritonNotFound, TritonServer


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsd_predictors.servers.triton", description=__doc__.split("\n")[0])
    parser.add_argument("repositories", nargs="+", type=Path, help="<out>/<case>/<V>/triton/<precision> directories")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--track", default="stable", help="`track` label of the mlsd_* series")
    parser.add_argument("--log", type=Path, default=None, help="tritonserver log file (default: discard)")
    args = parser.parse_args(argv)
    server = TritonServer(args.repositories, args.http_port, args.grpc_port, args.metrics_port, host=args.host,
                          log_path=args.log, env={"MLSD_TRACK": args.track})
    try:
        server.start()
    except (TritonNotFound, TritonFailed) as err:
        print(f"tritonserver: {err}", file=sys.stderr)
        return 1
    print(f"tritonserver ready: http {server.http_url}  grpc {server.grpc_url}  "
          f"metrics http://{args.host}:{args.metrics_port}/metrics", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)   # stop in `finally`, outside the handler: Popen.wait
    try:                                          # is not re-entrant (it holds a lock while waiting)
        assert server.process is not None
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
