"""Serving tier: real KServe ModelServers and a real tritonserver on 127.0.0.1, driven by tritonclient.

Models are built once per session at the small size (`mlsd build --small`, ~40 s on 2 cores) into a
session temp dir. This process never imports kserve: its v2 protobufs clash with tritonclient.grpc's
in one process, so servers run as subprocesses, as they do in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlsd_predictors.servers._triton import TritonNotFound, TritonServer, find_tritonserver

from tests._support import free_port, stop_process, wait_http
from tests._support.models import serving_models

from ._reference import CASES

pytestmark = pytest.mark.serving
HOST = "127.0.0.1"
MAX_REQUEST_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 of every case study (small), plus ad-click versions 2 and 3 for `mlsd serve`."""
    return serving_models(Path(os.environ.get("MLSD_TEST_MODELS") or tmp_path_factory.getbasetemp() / "serving-models"))


@dataclass(frozen=True)
class Endpoint:
    case: str
    http: str
    grpc: str
    metrics: str
    runtime: str


@pytest.fixture(scope="session")
def kserve_servers(models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Endpoint]]:
    """One `python -m mlsd_predictors.servers.kserve` per case study (fp32), as the ServingRuntime runs it."""
    logs = tmp_path_factory.mktemp("kserve-logs")
    started: dict[str, tuple[subprocess.Popen, Endpoint, Path]] = {}
    try:
        for case in CASES:
            http, grpc = free_port(), free_port()
            log = logs / f"{case}.log"
            command = [sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={case}",
                       f"--model_name={case}", f"--model_dir={models_root / case / '1' / 'kserve' / 'fp32'}",
                       f"--host={HOST}", f"--http_port={http}", f"--grpc_port={grpc}", "--track=stable",
                       f"--max_request_bytes={MAX_REQUEST_BYTES}", "--ort_threads=1"]
            with open(log, "wb") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            endpoint = Endpoint(case, f"{HOST}:{http}", f"{HOST}:{grpc}", f"http://{HOST}:{http}/metrics", "kserve")
            started[case] = (process, endpoint, log)
        for case, (process, endpoint, log) in started.items():
            wait_http(f"http://{endpoint.http}/v2/models/{case}/ready", process, log)
        yield {case: endpoint for case, (_, endpoint, _) in started.items()}
    finally:
        for process, _, _ in started.values():
            stop_process(process)


@pytest.fixture(scope="session")
def triton_server(models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Endpoint]]:
    """One real tritonserver holding every case study's `triton/fp32` repository, as `mlsd build` wrote it."""
    try:
        find_tritonserver()
    except TritonNotFound as err:
        pytest.fail(str(err))
    work = tmp_path_factory.mktemp("triton")
    server = TritonServer([models_root / case / "1" / "triton" / "fp32" for case in CASES],
                          free_port(), free_port(), free_port(), host=HOST, workdir=work / "work",
                          log_path=work / "tritonserver.log", env={"MLSD_TRACK": "stable", "MLSD_ORT_THREADS": "1"})
    server.start(timeout=180)
    try:
        metrics = f"http://{HOST}:{server.metrics_port}/metrics"
        yield {case: Endpoint(case, server.http_url, server.grpc_url, metrics, "triton") for case in CASES}
    finally:
        server.stop()


@pytest.fixture(scope="session")
def endpoints(kserve_servers, triton_server) -> dict[tuple[str, str], Endpoint]:
    return {**{(c, "kserve"): e for c, e in kserve_servers.items()},
            **{(c, "triton"): e for c, e in triton_server.items()}}
