"""What every test tier and the benchmarks share: free ports, polling, waiting for an HTTP server,
stopping a process, and the audited control plane that the fault and security suites start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from mlsd_devcluster import ControlPlane

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def poll(predicate: Callable[[], T], what: str, *, timeout: float, interval: float = 0.3,
         not_yet: tuple[type[BaseException], ...] = (), detail: Callable[[], str] | None = None) -> T:
    """Calls `predicate` until it returns something truthy, and returns that. An exception in
    `not_yet` counts as "not yet"; on timeout the test fails, naming `what` and adding `detail()`
    (a log tail, say)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except not_yet:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""


def wait_http(url: str, process: subprocess.Popen | Callable[[], bool], log: Path | None = None,
              timeout: float = 120) -> None:
    """Waits until `url` answers 200; fails at once if the server (a process, or an `alive()`
    callable) exits first, with its log's tail."""
    alive = (lambda: process.poll() is None) if isinstance(process, subprocess.Popen) else process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            code = f" with {process.returncode}" if isinstance(process, subprocess.Popen) else ""
            pytest.fail(f"server for {url} exited{code} before it was ready:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"{url} not ready after {timeout}s:\n{_tail(log)}")


def stop_process(process: subprocess.Popen | None, *, group: bool = False, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; `group` signals the process group (a process
    started with start_new_session=True and its children)."""
    if process is None or process.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig) if group else process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def audited_plane(work_dir: Path, **options: Any) -> Iterator[ControlPlane]:
    """A control plane of its own (controller-manager, scheduler, kwok) with the audit log on and
    every CRD installed, for suites that break it or read what the operator asked of it; its logs
    stay in `work_dir` for reading after a failure."""
    from mlsd_devcluster import ControlPlane, MissingBinariesError
    from tests.integration.operator_harness import install_crds

    plane = ControlPlane(controller_manager=True, scheduler=True, kwok=True, audit=True, work_dir=work_dir,
                         **options)
    try:
        plane.start()
    except MissingBinariesError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        install_crds(plane)
        yield plane
    finally:
        plane.stop(keep_logs=True)
