"""A real `tritonserver` without the NGC image: the binary inside the `nvidia-pytriton` wheel.

The wheel carries tritonserver 2.51 (CPU-capable) with the Python backend only. To run it:
- the Python backend stub must match this interpreter: `python_backend_stubs/<X.Y>/...` is copied
  beside `libtriton_python.so` in a private backend directory;
- LD_LIBRARY_PATH holds this interpreter's LIBDIR first (so the stub embeds the same libpython)
  and the wheel's `nvidia_pytriton.libs`;
- PATH starts with this interpreter's bin directory: the embedded interpreter derives `sys.prefix`
  from the `python3` it finds there, so a virtualenv's site-packages (numpy, onnxruntime, usearch,
  mlsd_predictors) are importable from model.py files. The stub ignores PYTHONPATH.

Repositories are "localised" into a work directory: models with `platform: "onnxruntime_onnx"` get
the Python-backend shim (`_triton_shim/model.py`) in place of the missing native backend; Python
and ensemble models are linked unchanged. Every address is the one given (127.0.0.1 by default).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlsd_contract import TRAITS
from mlsd_predictors.pull import parse_config, write_config

SHIM = Path(__file__).parent / "_triton_shim" / "model.py"
INSTALL_HINT = ("tritonserver not found: install the serve extra (pip install 'mlsd-serving[serve]', which "
                "brings nvidia-pytriton==0.7.0 and its tritonserver binary), or set MLSD_TRITONSERVER to a "
                "tritonserver binary whose backends directory has the onnxruntime and python backends")


class TritonNotFound(RuntimeError):
    pass


class TritonFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backends: Path
    stub: Path | None
    library_path: tuple[Path, ...]
    native_onnxruntime: bool


def find_tritonserver() -> TritonInstall:
    """The pytriton wheel's tritonserver (or MLSD_TRITONSERVER), or TritonNotFound naming the install."""
    override = os.environ.get("MLSD_TRITONSERVER")
    if override:
        binary = Path(override)
        backends = Path(os.environ.get("MLSD_TRITON_BACKENDS", binary.parent.parent / "backends"))
        if not binary.is_file():
            raise TritonNotFound(f"MLSD_TRITONSERVER={override} is not a file")
        return TritonInstall(binary, backends, None, (), (backends / "onnxruntime").is_dir())
    try:
        import pytriton
    except ImportError as err:
        raise TritonNotFound(INSTALL_HINT) from err
    root = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    binary, stub = root / "bin" / "tritonserver", root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.is_file():
        raise TritonNotFound(f"{INSTALL_HINT} (looked for {binary})")
    if not stub.is_file():
        raise TritonNotFound(f"the pytriton wheel has no Python backend stub for Python {version} ({stub})")
    libdir = Path(sysconfig.get_config_var("LIBDIR") or sys.base_prefix + "/lib")
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    return TritonInstall(binary, root / "backends", stub, (libdir, libs), False)


def _backend_directory(install: TritonInstall, workdir: Path) -> Path:
    """A private copy of the backends with the interpreter's stub beside libtriton_python.so."""
    if install.stub is None:
        return install.backends
    target = workdir / "backends"
    if not target.exists():
        shutil.copytree(install.backends, target, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(install.stub, target / "python" / "triton_python_backend_stub")
    return target


Annotate = Callable[[str, object], None]
"""(model name, parsed ModelConfig) -> None: adds parameters (e.g. which output is the score)."""


def localize(repositories: Sequence[Path], workdir: Path, *, native_onnxruntime: bool,
             annotate: Annotate | None = None) -> list[Path]:
    """Repositories tritonserver can load here; ONNX models go through the shim unless native."""
    out = []
    for n, repository in enumerate(repositories):
        target = workdir / f"repository-{n}"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for model in sorted(p for p in Path(repository).iterdir() if p.is_dir() and not p.name.startswith(".")):
            config = parse_config(model / "config.pbtxt")
            is_onnx = config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime"
            if annotate is not None:
                annotate(model.name, config)
            if native_onnxruntime or not is_onnx:
                if annotate is None:
                    (target / model.name).symlink_to(model.resolve(), target_is_directory=True)
                    continue
                shutil.copytree(model, target / model.name, symlinks=True)
                write_config(target / model.name / "config.pbtxt", config)
                continue
            config.platform = ""
            config.backend = "python"
            graph = config.default_model_filename or "model.onnx"
            config.default_model_filename = ""
            config.parameters["mlsd_onnx_file"].string_value = graph
            config.parameters["mlsd_case_study"].string_value = config.parameters["mlsd_case_study"].string_value or model.name
            (target / model.name).mkdir()
            write_config(target / model.name / "config.pbtxt", config)
            for version in (p for p in model.iterdir() if p.is_dir() and p.name.isdigit()):
                (target / model.name / version.name).mkdir()
                for item in version.iterdir():
                    (target / model.name / version.name / item.name).symlink_to(item.resolve())
                shutil.copy2(SHIM, target / model.name / version.name / "model.py")
        out.append(target)
    return out


# Which output of which Triton model carries the score the canary analysis compares (the same
# quantity the KServe predictors observe). Models run by the shim export it; others do not.
SCORE_OUTPUTS = {
    traits.triton_score.model: (case.value, traits.triton_score.output, traits.triton_score.select,
                                ",".join(traits.triton_score.labels))
    for case, traits in TRAITS.items() if traits.triton_score is not None
}


def score_annotator(model_name: str, config) -> None:
    """Default `annotate`: tags shim-served models with their case study and score output."""
    if model_name in SCORE_OUTPUTS:
        case, output, select, labels = SCORE_OUTPUTS[model_name]
        for key, value in (("mlsd_case_study", case), ("mlsd_score_output", output),
                           ("mlsd_score_select", select), ("mlsd_score_labels", labels)):
            config.parameters[key].string_value = value


def environment(install: TritonInstall, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if install.library_path:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*(str(p) for p in install.library_path), *filter(None, [env.get("LD_LIBRARY_PATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MLSD_ORT_THREADS", "0")
    env.update(extra or {})
    return env


@dataclass
class TritonServer:
    """One tritonserver process on `host`; use as a context manager or call start()/stop()."""

    repositories: Sequence[Path]
    http_port: int
    grpc_port: int
    metrics_port: int
    host: str = "127.0.0.1"
    workdir: Path | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    annotate: Annotate | None = score_annotator
    extra_args: Sequence[str] = ()
    process: subprocess.Popen | None = None
    _tmp: tempfile.TemporaryDirectory | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        install = find_tritonserver()
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mlsd-triton-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        backends = _backend_directory(install, self.workdir)
        local = localize(self.repositories, self.workdir, native_onnxruntime=install.native_onnxruntime,
                         annotate=self.annotate)
        args = [str(install.binary), *(f"--model-repository={r}" for r in local),
                f"--backend-directory={backends}", "--model-control-mode=none", "--strict-readiness=true",
                "--exit-on-error=true", "--allow-gpu-metrics=false",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                "--metrics-config=summary_latencies=true", "--exit-timeout-secs=5", "--log-verbose=0", *self.extra_args]
        return args, environment(install, self.env)

    def start(self, timeout: float = 120.0) -> TritonServer:
        args, env = self.command()
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonFailed(f"tritonserver exited with {self.process.returncode}: {self._log_tail()}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise TritonFailed(f"tritonserver not ready after {timeout:.0f}s: {self._log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not Path(self.log_path).exists():
            return "(no log: pass log_path)"
        text = Path(self.log_path).read_text(errors="replace").splitlines()
        return "\n".join(line for line in text if not line.startswith(("+", "|")))[-4000:] or "\n".join(text[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)   # tritonserver drains in-flight requests on SIGINT
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
