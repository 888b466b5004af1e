"""Init-container step of a Triton pod: fetch a model repository and fit its configs to the pod.

    python -m mlsd_predictors.pull --source=URI --dest=/models --model-name=CASE \\
        --instance-kind=KIND_CPU|KIND_GPU [--max-batch-size=N --max-queue-delay-us=M]

`--source` is the variant's Triton layout (`<storageUri>/triton/<precision>`): a local path (a pvc://
claim is mounted by the operator and passed as a path), `file://`, or `s3://` / `gs://` through
KServe's storage helper (`kserve-storage`). Every model in the repository is copied to `--dest`,
then each `config.pbtxt` is parsed with tritonclient's `ModelConfig` protobuf and rewritten:

- `instance_group[].kind` becomes `--instance-kind` (a KIND_CPU group drops any `gpus` list);
- `max_batch_size` becomes `--max-batch-size` for every batching model, ensembles included, so an
  ensemble never allows more than its steps;
- `dynamic_batching.max_queue_delay_microseconds` becomes `--max-queue-delay-us` (ensembles have no
  scheduler of their own and are left alone); preferred sizes above the new maximum are dropped.

The variant's model card at the layout's root gates it: a variant `mlsd build` marked not servable,
or whose self-check rows compute differently on this node's CPU, is refused before anything is
copied into `--dest`.

Refused with a clear message (exit code 2): `..` segments or absolute links escaping the source, a
model name that is not a plain name, a missing model, a missing or unparsable `config.pbtxt`, a
model with no version directory, batching flags on a model that does not batch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlparse

INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU")
REMOTE_SCHEMES = ("s3", "gs")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PullError(Exception):
    """A repository that cannot be served as asked; the message says what and where."""


def model_config_pb2() -> ModuleType:
    """tritonclient's `model_config_pb2`, loaded without `tritonclient.grpc`'s package init.

    That init also registers `grpc_service.proto`, whose `inference.*` messages clash with KServe's
    own v2 protos in the same process; `model_config.proto` alone does not.
    """
    loaded = sys.modules.get("tritonclient.grpc.model_config_pb2") or sys.modules.get("_mlsd_model_config_pb2")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise PullError("tritonclient is not installed: pip install 'mlsd-serving[serve]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("_mlsd_model_config_pb2", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    sys.modules["_mlsd_model_config_pb2"] = module
    return module


def parse_config(path: Path):
    """A `config.pbtxt` as a `ModelConfig` message, or a PullError naming the file."""
    from google.protobuf import text_format

    if not path.is_file():
        raise PullError(f"missing model config: {path}")
    config = model_config_pb2().ModelConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise PullError(f"corrupt model config {path}: {err}") from err
    return config


def write_config(path: Path, config) -> None:
    from google.protobuf import text_format

    path.write_text(text_format.MessageToString(config), encoding="utf-8")


@dataclass(frozen=True)
class Rewrite:
    instance_kind: str
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None


def rewrite_config(config, rewrite: Rewrite, where: str) -> None:
    """Applies the pod's placement and batching to one parsed config (in place)."""
    pb = model_config_pb2()
    is_ensemble = config.platform == "ensemble"
    batching_flags = rewrite.max_batch_size is not None or rewrite.max_queue_delay_us is not None
    if batching_flags and config.max_batch_size == 0:
        raise PullError(f"{where}: max_batch_size is 0 (the model does not batch), "
                        "so --max-batch-size/--max-queue-delay-us cannot apply")
    if rewrite.max_batch_size is not None:
        config.max_batch_size = rewrite.max_batch_size
    if is_ensemble:
        return
    kind = pb.ModelInstanceGroup.Kind.Value(rewrite.instance_kind)
    if not config.instance_group:
        config.instance_group.add(kind=kind, count=1)
    for group in config.instance_group:
        group.kind = kind
        if rewrite.instance_kind == "KIND_CPU":
            del group.gpus[:]
    if rewrite.max_queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = rewrite.max_queue_delay_us
    if config.HasField("dynamic_batching") and config.max_batch_size > 0:
        keep = [size for size in config.dynamic_batching.preferred_batch_size if size <= config.max_batch_size]
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.preferred_batch_size.extend(keep)


def _check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise PullError(f"--model-name must be a plain model name, got {name!r}")
    return name


def _check_no_dotdot(source: str) -> None:
    path = urlparse(source).path if "://" in source else source
    if any(part == ".." for part in re.split(r"[/\\]", path)):
        raise PullError(f"--source must not contain '..' path segments: {source!r}")


def _check_tree(root: Path) -> None:
    """Refuses links that leave the repository (a repository is data, not a way out of it)."""
    resolved_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if target != resolved_root and resolved_root not in target.parents:
                    raise PullError(f"{path.relative_to(root)} links outside the repository ({target})")


def fetch(source: str, staging: Path) -> Path:
    """The repository's local root: the path itself, or a download into `staging`."""
    _check_no_dotdot(source)
    parsed = urlparse(source)
    if parsed.scheme in REMOTE_SCHEMES:
        try:
            from kserve_storage import Storage
        except ImportError as err:
            raise PullError(f"{parsed.scheme}:// sources need KServe's storage helper: "
                            "pip install kserve-storage==0.21.0 (the predictor image has it)") from err
        return Path(Storage.download(source, out_dir=str(staging)))
    if parsed.scheme == "file":
        root = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise PullError(f"unsupported source scheme {parsed.scheme}:// (use a path, file://, s3:// or gs://)")
    else:
        root = Path(source)
    if not root.is_dir():
        raise PullError(f"source is not a directory: {root}")
    return root


def resolve_model_dir(location: str) -> Path:
    """A predictor's model directory from a path, file:// URI, or s3:// gs:// URI (downloaded into a
    fresh temporary directory); PullError says why not."""
    remote = urlparse(location).scheme in REMOTE_SCHEMES
    return fetch(location, Path(tempfile.mkdtemp(prefix="mlsd-model-")) if remote else Path())


def _models(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_variant(root: Path, staged: Path) -> None:
    """The gate and self-check of the variant's card at the layout's root (written by `mlsd build`):
    a variant the build marked not servable is refused, and its self-check rows are re-run with
    onnxruntime on this node's CPU before anything reaches the model directory (tritonserver's ONNX
    backend runs the same graphs with the same CPU's kernels). A layout without a card (built before
    cards sat there) is pulled as it is."""
    from mlsd_predictors import CARD_FILE, CardError

    if not (root / CARD_FILE).is_file():
        return
    from mlsd_predictors.servers._card import load_servable
    from mlsd_predictors.servers._errors import VariantNotServable
    from mlsd_predictors.servers._integrity import onnx_session, self_check

    try:
        card = load_servable(root)
        for path in (card.self_check.tolerance if card.self_check else {}):
            self_check(root, path, onnx_session(staged / path), card)
    except (CardError, VariantNotServable) as err:
        raise PullError(str(err)) from None


def pull(source: str, dest: Path, model_name: str, rewrite: Rewrite) -> list[str]:
    """Copies the repository at `source` into `dest` and rewrites its configs; returns model names."""
    _check_name(model_name)
    if rewrite.instance_kind not in INSTANCE_KINDS:
        raise PullError(f"--instance-kind must be one of {', '.join(INSTANCE_KINDS)}, got {rewrite.instance_kind!r}")
    for flag, value in (("--max-batch-size", rewrite.max_batch_size), ("--max-queue-delay-us", rewrite.max_queue_delay_us)):
        if value is not None and value < (1 if flag == "--max-batch-size" else 0):
            raise PullError(f"{flag} out of range: {value}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest) as tmp:
        root = fetch(source, Path(tmp) / "download")
        _check_tree(root)
        models = _models(root)
        names = [m.name for m in models]
        if model_name not in names:
            raise PullError(f"model {model_name!r} not found in {source} (found: {', '.join(names) or 'nothing'})")
        staged = Path(tmp) / "staged"
        staged.mkdir()
        for model in models:
            _check_name(model.name)
            target = staged / model.name
            shutil.copytree(model, target, symlinks=False)
            config = parse_config(target / "config.pbtxt")
            if config.name and config.name != model.name:
                raise PullError(f"{model.name}/config.pbtxt names the model {config.name!r}: "
                                "Triton needs the directory name and config name to agree")
            if not any(p.is_dir() and p.name.isdigit() for p in target.iterdir()):
                raise PullError(f"{model.name}: no numeric version directory (e.g. {model.name}/1/)")
            rewrite_config(config, rewrite, f"{model.name}/config.pbtxt")
            write_config(target / "config.pbtxt", config)
        check_variant(root, staged)
        # Replace model by model: a restarted init container converges to the same tree.
        for model in models:
            final = dest / model.name
            if final.exists():
                shutil.rmtree(final)
            (staged / model.name).rename(final)
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlsd_predictors.pull", description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="path, file://, s3:// or gs:// URI of the Triton layout")
    parser.add_argument("--dest", required=True, type=Path, help="model repository directory to fill")
    parser.add_argument("--model-name", required=True, help="the entry model (the case study's name)")
    parser.add_argument("--instance-kind", required=True, choices=INSTANCE_KINDS)
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--max-queue-delay-us", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        names = pull(args.source, args.dest, args.model_name,
                     Rewrite(args.instance_kind, args.max_batch_size, args.max_queue_delay_us))
    except PullError as err:
        print(f"mlsd pull: {err}", file=sys.stderr)
        return 2
    print(f"mlsd pull: {', '.join(names)} -> {args.dest} ({args.instance_kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
