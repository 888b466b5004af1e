"""`mlsd serve`: a ModelDeployment on this machine, tracks as local servers behind a front door."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import uvicorn

from mlsd_contract.api import ModelDeployment

from ._backends import HOST, Backend, start_backend
from ._frontdoor import DEFAULT_MAX_INFLIGHT, Admission, FrontDoorMetrics, GrpcFrontDoor, Routing, http_app
from ._plan import Track, build_missing, plan

Progress = Callable[[str], None]
SHUTDOWN_GRACE_SECONDS = 2.0
"""After SIGINT/SIGTERM: how long requests in flight may finish before the front door cuts them;
the track servers then get BACKEND_STOP_SECONDS, so `mlsd serve` ends within 5 s even under load."""


@dataclass
class LocalDeployment:
    mdep: ModelDeployment
    models_dir: Path
    canary_percent: int | None = None
    http_port: int = 8000
    grpc_port: int = 8001
    small: bool = False
    build: bool = True
    max_inflight: int | None = None
    workdir: Path | None = None
    tracks: list[Track] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)

    def prepare(self, progress: Progress) -> None:
        self.tracks = plan(self.mdep, self.models_dir, self.canary_percent)
        runtime = self.mdep.spec.runtime
        missing = [t for t in self.tracks if not t.variant_dir(runtime).is_dir()]
        if missing and not self.build:
            raise FileNotFoundError("missing " + ", ".join(str(t.variant_dir(runtime)) for t in missing))
        build_missing(self.mdep.spec.case_study.value, self.tracks, runtime, small=self.small, on_line=progress)

    def start_backends(self, progress: Progress) -> None:
        self.workdir = self.workdir or Path(tempfile.mkdtemp(prefix="mlsd-serve-"))
        for track in self.tracks:
            progress(f"starting {track.name} track: {self.mdep.spec.case_study.value} v{track.version} "
                     f"{track.precision} on {self.mdep.spec.runtime.value}")
            self.backends.append(start_backend(self.mdep, track, self.workdir))
        # Start all, then wait: the servers load their models in parallel.
        with ThreadPoolExecutor(len(self.backends)) as pool:
            for future in [pool.submit(b.wait_ready) for b in self.backends]:
                future.result()

    def stop(self) -> None:
        """Stops every track's server at once (each gets SIGTERM, then SIGKILL after a short grace)."""
        if self.backends:
            with ThreadPoolExecutor(len(self.backends)) as pool:
                list(pool.map(Backend.stop, self.backends))
        self.backends.clear()

    async def serve_front_door(self, on_ready: Callable[[], None], stop: asyncio.Event) -> None:
        routing = Routing.of(self.backends)
        metrics = FrontDoorMetrics()
        admission = Admission(self.max_inflight or DEFAULT_MAX_INFLIGHT)      # one budget for REST and gRPC
        # In-flight requests get SHUTDOWN_GRACE_SECONDS to finish once a stop is asked; then they are cut.
        config = uvicorn.Config(http_app(self.backends, routing, metrics, admission), host=HOST, port=self.http_port,
                                log_level="warning", lifespan="on", timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None   # ours, below, stop everything in order
        grpc_front = GrpcFrontDoor(routing, metrics, admission)
        grpc_server = grpc.aio.server()
        grpc_server.add_generic_rpc_handlers((grpc_front.handler(),))
        grpc_server.add_insecure_port(f"{HOST}:{self.grpc_port}")
        await grpc_server.start()
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                raise RuntimeError(f"front door could not listen on {HOST}:{self.http_port}")
            await asyncio.sleep(0.05)
        on_ready()
        await stop.wait()
        server.should_exit = True
        await asyncio.gather(grpc_server.stop(grace=SHUTDOWN_GRACE_SECONDS), task)
        await grpc_front.close()


def run(deployment: LocalDeployment, progress: Progress, on_ready: Callable[[LocalDeployment], None]) -> None:
    """Builds, starts, serves until SIGINT/SIGTERM, then stops every server it started."""
    try:
        deployment.prepare(progress)
        started = time.monotonic()
        deployment.start_backends(progress)
        progress(f"tracks ready in {time.monotonic() - started:.1f}s")

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await deployment.serve_front_door(lambda: on_ready(deployment), stop)

        asyncio.run(main())
    finally:
        deployment.stop()
