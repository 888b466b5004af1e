"""Child processes of the control plane: own process group, log file, readiness polling.

Each binary runs in its own session so stopping it reaches anything it forked, and so a Ctrl-C
in the terminal reaches the Python process only: we then stop the children in order (etcd last)
instead of racing them all to exit at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux kills the child when the process that started it dies, even by SIGKILL, so a test run
    # killed hard leaves no etcd behind. Runs in the child between fork and exec.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class StartupError(RuntimeError):
    """A process exited or did not become ready; the message carries the tail of its log."""


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], log_path: Path, *, die_with_parent: bool):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.die_with_parent = die_with_parent
        self.popen = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            return subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )

    def respawn(self) -> None:
        """Starts the same command again (same flags, ports, data dir) after a stop or a crash;
        fault-injection tests use it to bring a component back."""
        if self.running():
            raise RuntimeError(f"{self.name} is still running")
        self.popen = self._spawn()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def fail(self, why: str) -> StartupError:
        return StartupError(
            f"{self.name} {why}; last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Polls `ready` until it holds; fails early, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise self.fail(f"exited with code {self.popen.returncode} before {what}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise self.fail(f"not {what} after {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL after `grace` seconds; always reaps."""
        if self.running():
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Also after a clean exit: a grandchild may still hold the group.
        _signal_group(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def http_ok(url: str, context: ssl.SSLContext | None = None, expect: bytes | None = None) -> bool:
    """True when GET `url` answers 200 (and contains `expect`, if given)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200 and (expect is None or expect in response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


def insecure_tls() -> ssl.SSLContext:
    """For health checks of components that serve a self-signed cert of their own making."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
