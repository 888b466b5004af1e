"""One local server per track: the KServe predictor process or a tritonserver, on 127.0.0.1."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mlsd_contract.api import ModelDeployment, Runtime
from mlsd_predictors.pull import Rewrite, pull
from mlsd_predictors.servers._triton import TritonServer

from ._plan import Track

HOST = "127.0.0.1"
BACKEND_STOP_SECONDS = 2.0
"""SIGTERM, then SIGKILL after this long: a server still answering a burst must not hold `mlsd serve`."""
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies, however it dies
    (a SIGKILLed `mlsd serve` cannot stop its servers itself; they must not linger holding ports)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass     # not Linux: stop() still ends them on every orderly exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class BackendFailed(RuntimeError):
    pass


@dataclass
class Backend:
    track: Track
    model_name: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    process: subprocess.Popen | None = None
    triton: TritonServer | None = None
    extra: dict = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def ready(self) -> bool:
        try:
            url = f"{self.http_url}/v2/models/{self.model_name}/ready"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(line for line in lines if not line.startswith(("+", "|")))[-3000:]

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.process or (self.triton.process if self.triton else None)
            if process is not None and process.poll() is not None:
                raise BackendFailed(f"{self.track.name} server exited ({process.returncode}):\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.3)
        raise BackendFailed(f"{self.track.name} server not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.triton is not None:
            self.triton.stop(BACKEND_STOP_SECONDS)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(BACKEND_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)    # its own session: any helpers it started too
                self.process.wait()


def start_backend(mdep: ModelDeployment, track: Track, workdir: Path) -> Backend:
    case = mdep.spec.case_study.value
    runtime = mdep.spec.runtime
    batching = mdep.spec.batching
    log_path = workdir / f"{track.name}.log"
    env = {**os.environ, "MLSD_TRACK": track.name}
    if runtime == Runtime.KSERVE:
        http, grpc = free_port(), free_port()
        command = [sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={case}",
                   f"--model_name={case}", f"--model_dir={track.variant_dir(runtime)}", f"--host={HOST}",
                   f"--http_port={http}", f"--grpc_port={grpc}", f"--track={track.name}"]
        if batching is not None:
            command += [f"--max_batch_size={batching.max_batch_size}", f"--max_latency_ms={batching.max_latency_ms}"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                       preexec_fn=die_with_parent)
        return Backend(track, case, http, grpc, http, log_path, process=process)
    repository = workdir / track.name / "models"
    rewrite = Rewrite("KIND_CPU", batching.max_batch_size if batching else None,
                      batching.max_latency_ms * 1000 if batching else None)
    pull(str(track.variant_dir(runtime)), repository, case, rewrite)
    http, grpc, metrics = free_port(), free_port(), free_port()
    server = TritonServer([repository], http, grpc, metrics, host=HOST, workdir=workdir / track.name / "triton",
                          log_path=log_path, env={"MLSD_TRACK": track.name})
    args, triton_env = server.command()
    with open(log_path, "wb") as log:
        server.process = subprocess.Popen(args, env=triton_env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=die_with_parent)
    return Backend(track, case, http, grpc, metrics, log_path, triton=server)
