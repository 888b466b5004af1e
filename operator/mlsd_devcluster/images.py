"""The project's container images, built from its own Dockerfiles without a Docker engine.

    mlsd dev-cluster images build [NAME ...]     (hack/images.sh build)
    mlsd dev-cluster images list                 reference, digest, uncompressed size
    mlsd dev-cluster images push REGISTRY        copies them to REGISTRY/<name>:<tag>

buildah builds the unchanged Dockerfiles; podman and skopeo read the same store. Everything lives
under `${MLSD_CACHE:-~/.cache/mlsd}/images/`: the containers store (its own root, so the system's
is never touched), the base image's root filesystem, buildah's cache mounts (pip's wheel cache).

The base: `python:3.11-slim` comes from Docker Hub, which machines without a registry cannot reach.
Its equivalent is made from Debian's own packages (bookworm's python3.11, by mmdebstrap) and given
to the Dockerfiles through their `PYTHON_IMAGE` build argument; a user with a registry builds the
same Dockerfiles on the official image instead.

Each image is tagged with the digest of its inputs (the Dockerfile, the stage, the files its COPY
lines name, the base); a build whose inputs are unchanged finds its image in the store and takes
no time. Build steps reach the package index through the host's trust store and pip settings,
mounted for the build only: nothing of the host is baked into an image.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from ._binaries import cache_root

REPOSITORY = "ghcr.io/mlsd-serving"
TAG = version("mlsd-serving")
INPUTS_LABEL = "org.mlsd-serving.inputs"
TOOLS_HINT = ("install the image tools: `hack/install-test-deps.sh` (as root; Debian's buildah, podman, "
              "skopeo and mmdebstrap)")

BASE_REF = "localhost/mlsd/python:3.11-bookworm"
BASE_SUITE = "bookworm"
# python:3.11-slim's equivalent: the interpreter, venv, the shared libpython (the Triton Python
# backend's stub embeds it), `python` on PATH, CA certificates; passwd (useradd) is in minbase.
BASE_PACKAGES = ("python3.11", "python3.11-venv", "libpython3.11", "python-is-python3", "ca-certificates")
MMDEBSTRAP_HOOKS = "/usr/share/mmdebstrap/hooks"
BASE_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


class ImageToolsMissing(RuntimeError):
    """buildah, podman or mmdebstrap is not installed."""


class ImageBuildFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    target: str | None = None
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}/{self.name}:{TAG}"


IMAGES = (
    Image("operator", "operator/Dockerfile", description="`mlsd operator` (kopf), core dependencies only"),
    Image("predictor", "predictors/Dockerfile", description="KServe predictors and the Triton model puller"),
    Image("tritonserver", "predictors/Dockerfile", "triton",
          description="tritonserver (nvidia-pytriton, CPU) with onnxruntime and usearch for the Python backend"),
    Image("trainer", "predictors/Dockerfile", "trainer", description="`mlsd build`: torch, onnx (retraining Jobs)"),
)
BY_NAME = {image.name: image for image in IMAGES}


def cache_dir() -> Path:
    return cache_root() / "images"


def store_options() -> list[str]:
    """--root/--runroot shared by buildah and podman: the project's own containers store."""
    runroot = Path(os.environ.get("XDG_RUNTIME_DIR") or "/run") / "mlsd-images"
    return ["--root", str(cache_dir() / "storage"), "--runroot", str(runroot), "--storage-driver", "overlay"]


def storage_spec() -> str:
    """The store in skopeo's `containers-storage:[driver@root+runroot]` transport syntax."""
    opts = store_options()
    return f"overlay@{opts[1]}+{opts[3]}"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageToolsMissing(f"{name} not found: {TOOLS_HINT}")
    return path


def containers_env() -> dict[str, str]:
    """The environment for podman: a containers.conf whose default ulimits this host can grant.

    podman's defaults (nofile 1048576, nproc 32768) are raises, which need CAP_SYS_RESOURCE; a
    sandbox without it fails every start with "error setting rlimit". Containers get the host's
    limits instead (nproc capped at 16384, which is always a lowering here), as a kubelet's do."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    nproc = 16384 if nproc == resource.RLIM_INFINITY else min(nproc, 16384)
    conf = cache_dir() / "containers.conf"
    text = f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
    if not conf.is_file() or conf.read_text() != text:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
    return dict(os.environ, CONTAINERS_CONF=str(conf))


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("podman"), *store_options(), *args], check=check, text=True,
                          capture_output=capture, env=containers_env())


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def copy_sources(dockerfile: Path) -> list[str]:
    """The context paths the Dockerfile's COPY/ADD lines read (not `--from` stage copies)."""
    sources: list[str] = []
    lines = dockerfile.read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        words = shlex.split(line, comments=True) if line.strip() else []
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        flags = [w for w in words[1:] if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [w for w in words[1:] if not w.startswith("--")]
        sources.extend(p for p in paths[:-1] if p not in sources)
    return sources


def _files(root: Path, sources: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for source in sources:
        path = root / source
        if not path.exists():
            raise ImageBuildFailed(f"{source} (named by a COPY line) does not exist under {root}")
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out += [p for p in candidates if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return out


def inputs_digest(image: Image, root: Path, base_key: str, files: Sequence[Path] | None = None) -> str:
    """`files`: the context files, when the caller has them already (`context_files`)."""
    dockerfile = root / image.dockerfile
    files = context_files(image, root) if files is None else files
    parts: list[bytes] = [dockerfile.read_bytes(), (image.target or "").encode(), base_key.encode()]
    for path in files:
        parts += [str(path.relative_to(root)).encode(), path.read_bytes(), b"x" if os.access(path, os.X_OK) else b"-"]
    return _digest(parts)


def context_files(image: Image, root: Path) -> list[Path]:
    """What the image's COPY lines read from the checkout."""
    return _files(root, copy_sources(root / image.dockerfile))


def _stage_context(files: Sequence[Path], root: Path, into: Path) -> None:
    """A build context holding only what the COPY lines read (the checkout has .venv and more)."""
    for path in files:
        target = into / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _labels(ref: str) -> dict[str, str] | None:
    result = podman("image", "inspect", "--format", "{{json .Labels}}", ref, check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip() or "null") or {}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def base_key() -> str:
    return _digest([BASE_SUITE.encode(), b"merged-usr", *(p.encode() for p in BASE_PACKAGES),
                    *(e.encode() for e in BASE_EXCLUDES)])


def ensure_base() -> str:
    """The Debian-made python base in the store (built once, then found by its key); returns the key."""
    key = base_key()
    labels = _labels(BASE_REF)
    if labels is not None and labels.get(INPUTS_LABEL) == key:
        return key
    tarball = cache_dir() / f"base-{key[:16]}.tar"
    if not tarball.exists():
        tool("mmdebstrap")
        _log(f"base: mmdebstrap {BASE_SUITE} with {' '.join(BASE_PACKAGES)}")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        command = [tool("mmdebstrap"), "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                   # merged /usr set up by the hook, not by the usrmerge package (which pulls in perl)
                   f"--hook-dir={MMDEBSTRAP_HOOKS}/merged-usr",
                   "--aptopt=APT::Install-Recommends \"false\"",
                   *(f"--dpkgopt=path-exclude={e}" for e in BASE_EXCLUDES),
                   # the apt lists are not needed at run time; an image that needs packages updates first
                   "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*",
                   "--format=tar", BASE_SUITE, str(partial)]
        result = subprocess.run(command, text=True, capture_output=True)
        if result.returncode != 0:
            raise ImageBuildFailed(f"mmdebstrap failed ({result.returncode}):\n{result.stderr[-3000:]}")
        partial.rename(tarball)
    changes = ["ENV LANG=C.UTF-8", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               'CMD ["python3"]', f"LABEL {INPUTS_LABEL}={key}"]
    podman("import", *(arg for change in changes for arg in ("--change", change)), str(tarball), BASE_REF)
    return key


def _build_mounts(workdir: Path) -> list[str]:
    """The host's CA bundle and pip index settings for RUN steps only (pip reads /etc/pip.conf)."""
    mounts: list[str] = []
    bundle = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    lines = ["[global]"]
    if bundle.is_file():
        mounts += ["--volume", f"{bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
        lines.append("cert = /etc/ssl/certs/ca-certificates.crt")
    for key in ("index-url", "extra-index-url", "trusted-host", "timeout"):
        value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            lines.append(f"{key} = {value}")
    conf = workdir / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    mounts += ["--volume", f"{conf}:/etc/pip.conf:ro"]
    return mounts


@dataclass(frozen=True)
class BuildResult:
    image: Image
    key: str
    cached: bool
    seconds: float


def build(names: Sequence[str] = (), root: Path | None = None) -> list[BuildResult]:
    """Builds (or finds by inputs) each named image, all by default; raises on the first failure."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ImageBuildFailed(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    selected = [BY_NAME[n] for n in names] if names else list(IMAGES)
    buildah = tool("buildah")
    tool("podman")
    started = time.monotonic()
    key_of_base = ensure_base()
    _log(f"base {BASE_REF} ready ({time.monotonic() - started:.1f}s)")
    results = []
    env = dict(os.environ, TMPDIR=str(cache_dir() / "tmp"))   # buildah's cache mounts live under TMPDIR
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    for image in selected:
        t0 = time.monotonic()
        files = context_files(image, root)
        key = inputs_digest(image, root, key_of_base, files)
        labels = _labels(image.ref)
        if labels is not None and labels.get(INPUTS_LABEL) == key:
            results.append(BuildResult(image, key, True, time.monotonic() - t0))
            _log(f"{image.ref}: up to date (inputs {key[:12]})")
            continue
        _log(f"{image.ref}: building {image.dockerfile}" + (f" --target {image.target}" if image.target else ""))
        with tempfile.TemporaryDirectory(prefix="mlsd-image-", dir=env["TMPDIR"]) as tmp:
            context = Path(tmp) / "context"
            _stage_context(files, root, context)
            command = [buildah, *store_options(), "build", "--layers", "--network", "host",
                       "--pull-never", "--file", str(root / image.dockerfile),
                       "--build-arg", f"PYTHON_IMAGE={BASE_REF}", "--label", f"{INPUTS_LABEL}={key}",
                       "--tag", image.ref, *_build_mounts(Path(tmp))]
            if image.target:
                command += ["--target", image.target]
            log_path = cache_dir() / "logs" / f"{image.name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "w") as log:
                result = subprocess.run([*command, str(context)], stdout=log, stderr=subprocess.STDOUT, env=env)
        if result.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
            raise ImageBuildFailed(f"{image.ref}: buildah failed ({result.returncode}); {log_path}:\n{tail}")
        seconds = time.monotonic() - t0
        results.append(BuildResult(image, key, False, seconds))
        _log(f"{image.ref}: built in {seconds:.0f}s")
    return results


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    digest: str
    size: int          # uncompressed bytes, as stored

    @property
    def size_mb(self) -> float:
        return self.size / 1e6


def info(image: Image) -> ImageInfo | None:
    result = podman("image", "inspect", "--format", "{{.Digest}} {{.Size}}", image.ref, check=False)
    if result.returncode != 0:
        return None
    digest, size = result.stdout.split()
    return ImageInfo(image.ref, digest, int(size))


def push(registry: str, names: Sequence[str] = (), tls_verify: bool = True) -> list[str]:
    """Copies the built images to REGISTRY/<name>:<tag>; returns the destinations."""
    selected = [BY_NAME[n] for n in names] if names else list(IMAGES)
    pushed = []
    for image in selected:
        if info(image) is None:
            raise ImageBuildFailed(f"{image.ref} is not built: run `hack/images.sh build {image.name}` first")
        dest = f"{registry.rstrip('/')}/{image.name}:{TAG}"
        podman("push", f"--tls-verify={'true' if tls_verify else 'false'}", image.ref, f"docker://{dest}",
               capture=False)
        pushed.append(dest)
    return pushed
