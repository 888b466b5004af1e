"""`tritonserver` in the project's Triton image: NGC's command line, served by the pytriton wheel.

The operator renders the same container for NGC's image and for ours:

    tritonserver --model-repository=/models --model-control-mode=none --http-port=8000 ...

In our image `tritonserver` runs this module. It localises each `--model-repository` into a work
directory under $TMPDIR (the pod's writable /tmp emptyDir; the models volume is mounted read-only),
so that ONNX models run through the Python-backend shim (the wheel has no onnxruntime backend), adds
the private `--backend-directory` holding this interpreter's stub, and then replaces itself with
the binary (exec: the pid, signals, exit status and logs are tritonserver's own). Every other flag
goes through unchanged. `--help` and `--version` go straight to the binary.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ._triton import (TritonNotFound, _backend_directory, environment, find_tritonserver, localize,
                      score_annotator)

_REPOSITORY_FLAGS = ("--model-repository", "--model-store")


def split_repositories(argv: list[str]) -> tuple[list[Path], list[str]]:
    """(the model repositories, every other argument) from tritonserver's own command line."""
    repositories: list[Path] = []
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in _REPOSITORY_FLAGS:
            if not eq:
                value = next(args, "")
            if not value:
                raise SystemExit(f"tritonserver: {name} needs a directory")
            repositories.append(Path(value))
        else:
            rest.append(arg)
    return repositories, rest


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        install = find_tritonserver()
    except TritonNotFound as err:
        raise SystemExit(f"tritonserver: {err}") from err
    env = environment(install)
    repositories, rest = split_repositories(argv)
    if not repositories:            # --help, --version, or tritonserver's own complaint
        os.execve(install.binary, [str(install.binary), *rest], env)
    missing = [str(r) for r in repositories if not r.is_dir()]
    if missing:
        raise SystemExit(f"tritonserver: model repository not found: {', '.join(missing)}")
    workdir = Path(tempfile.mkdtemp(prefix="mlsd-triton-"))
    backends = _backend_directory(install, workdir)
    local = localize(repositories, workdir, native_onnxruntime=install.native_onnxruntime,
                     annotate=score_annotator)
    args = [str(install.binary), *(f"--model-repository={r}" for r in local),
            f"--backend-directory={backends}", *rest]
    sys.stdout.flush()
    os.execve(install.binary, args, env)


if __name__ == "__main__":
    main()
