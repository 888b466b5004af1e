"""A model repository is checked before it serves: each graph must load, and must be the graph its
model card describes (input and output names, datatypes, dims). A truncated or corrupted file, or a
card copied next to another model, is refused at load time with a message naming the file and the
difference, so the new version never becomes ready and the previous one keeps its traffic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from mlsd_predictors import CardError
from mlsd_predictors._host import describe, host

_ORT_DATATYPES = {
    "tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64", "tensor(int64)": "INT64",
    "tensor(int32)": "INT32", "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


class RepositoryError(CardError):
    """A model file that cannot be served as its card describes it."""


class SelfCheckFailed(RepositoryError):
    """The variant computes differently on this machine than where its quality gate was measured."""


def _describe(args) -> dict[str, tuple[str, tuple]]:
    return {a.name: (_ORT_DATATYPES.get(a.type, a.type),
                     tuple(d if isinstance(d, int) else -1 for d in a.shape)) for a in args}


def _compare(kind: str, card_tensors, graph: dict[str, tuple[str, tuple]], where: str) -> None:
    expected = {t.name: (t.datatype, tuple(t.shape)) for t in card_tensors}
    if set(expected) != set(graph):
        raise RepositoryError(f"{where}: the card's {kind} {sorted(expected)} are not the graph's {sorted(graph)}: "
                              "card and model do not belong together")
    for name, (datatype, shape) in expected.items():
        actual_type, actual_shape = graph[name]
        if actual_type != datatype:
            raise RepositoryError(f"{where}: {kind[:-1]} {name!r} is {actual_type} in the graph, {datatype} in the card")
        if len(actual_shape) != len(shape) or any(a != e and -1 not in (a, e) for a, e in zip(actual_shape, shape)):
            raise RepositoryError(f"{where}: {kind[:-1]} {name!r} has dims {list(actual_shape)} in the graph, "
                                  f"{list(shape)} in the card")


def onnx_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def checked_session(model_dir: Path, file: str, card, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session for `file`, after checking it loads and matches the card's graph entry."""
    path = Path(model_dir) / file
    if not path.is_file():
        raise RepositoryError(f"{path}: missing (the card lists it)")
    try:
        session = onnx_session(path, threads)
    except Exception as err:   # onnxruntime raises InvalidProtobuf, Fail, InvalidGraph... as plain RuntimeErrors
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RepositoryError(f"{path}: not a loadable ONNX graph ({path.stat().st_size} bytes): {first_line[:300]}") from None
    entry = next((g for g in getattr(card, "graphs", ()) if g.file == file), None)
    if entry is not None:
        _compare("inputs", entry.signature.inputs, _describe(session.get_inputs()), str(path))
        _compare("outputs", entry.signature.outputs, _describe(session.get_outputs()), str(path))
    self_check(Path(model_dir), file, session, card)
    return session


def self_check(model_dir: Path, file: str, session: ort.InferenceSession, card) -> float | None:
    """Re-runs the golden rows `mlsd build` recorded for `file` and compares the outputs; returns the
    largest difference, None when the card records no self-check (built before it existed).

    The variant's quality gate was measured on the build machine; onnxruntime picks its kernels by
    instruction set, so a variant can compute differently where it serves. Beyond the build-derived
    tolerance the variant is refused, naming both machines, rather than serving a model nobody measured."""
    check = getattr(card, "self_check", None)
    if not check or file not in check.tolerance:
        return None
    path = model_dir / check.file
    try:
        with np.load(path) as golden:
            recorded = {key: golden[key] for key in golden.files if key.startswith(f"{file}|")}
    except (OSError, ValueError) as err:
        raise SelfCheckFailed(f"{path}: the card's self-check rows cannot be read: {err}") from None
    feeds = {key.split("|", 2)[2]: value for key, value in recorded.items() if key.startswith(f"{file}|in|")}
    names = [o.name for o in session.get_outputs()]
    try:
        outputs = dict(zip(names, session.run(None, feeds), strict=True))
    except Exception as err:  # onnxruntime raises plain RuntimeErrors for bad feeds
        raise SelfCheckFailed(f"{path}: the recorded rows do not run through {file}: {str(err)[:300]}") from None
    tolerance, worst, where = check.tolerance[file], 0.0, ""
    for name in names:
        want = recorded.get(f"{file}|out|{name}")
        if want is None or want.shape != outputs[name].shape:
            raise SelfCheckFailed(f"{path}: no recorded {name!r} of the graph's shape: card and rows do not belong together")
        difference = float(np.abs(outputs[name].astype(np.float64) - want.astype(np.float64)).max())
        if difference > worst or not np.isfinite(difference):
            worst, where = difference, name
    if not worst <= tolerance:
        built = describe(card.measured_on) if getattr(card, "measured_on", None) else "an unrecorded machine"
        raise SelfCheckFailed(
            f"{model_dir / file}: self-check failed: output {where!r} differs from what the build recorded by up to "
            f"{worst:.3g} on {check.rows} rows (tolerance {tolerance:.3g}); built and gated on {built}, serving on "
            f"{describe(host())}. This variant does not compute here what its quality gate measured: serve another "
            "precision or rebuild it on this node pool")
    return worst
