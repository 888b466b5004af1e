"""The KServe predictor takes spec.batching from the environment the operator renders
(MLSD_MAX_BATCH_SIZE, MLSD_MAX_LATENCY_MS: builders/_kserve.py), flags overriding it. Run in a
fresh process: importing the KServe server loads kserve's protobufs, which clash with
tritonclient's in a process that already holds them."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from mlsd_predictors.servers.kserve import _parser
required = ["--case_study=ad-click-prediction", "--model_dir=/m"]
args = _parser().parse_args(required + __import__("json").loads(__import__("sys").argv[1]))
print(args.max_batch_size, args.max_latency_ms)
"""


def _parsed(env: dict[str, str], flags: str = "[]") -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLSD_MAX_")}
    result = subprocess.run([sys.executable, "-c", SCRIPT, flags], env={**clean, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_batching_comes_from_the_environment_the_operator_renders() -> None:
    assert _parsed({}) == ["None", "0.0"]
    assert _parsed({"MLSD_MAX_BATCH_SIZE": "48", "MLSD_MAX_LATENCY_MS": "4"}) == ["48", "4.0"]
    assert _parsed({"MLSD_MAX_BATCH_SIZE": "48"}, '["--max_batch_size=8"]') == ["8", "0.0"]
