"""An onnxruntime worker for benchmarks/quantization_isa.py, run under `qemu-x86_64 -cpu MODEL` so
onnxruntime selects the kernels of that CPU (e.g. AVX2 without VNNI). Reads pickled
(graph path, feeds) from stdin, writes pickled outputs; one session per graph."""

from __future__ import annotations

import pickle
import sys

from mlsd_predictors.build._onnx import OnnxRunner


def main() -> None:
    sessions: dict[str, OnnxRunner] = {}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            path, feeds = pickle.load(stdin)
        except EOFError:
            return
        runner = sessions.get(path) or sessions.setdefault(path, OnnxRunner(path))
        pickle.dump(runner(feeds), stdout, protocol=5)
        stdout.flush()


if __name__ == "__main__":
    main()
