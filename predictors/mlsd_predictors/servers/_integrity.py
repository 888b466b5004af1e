"""A model repository is checked before it serves: each graph must load, and must be the graph its
model card describes (input and output names, datatypes, dims). A truncated or corrupted file, or a
card copied next to another model, is refused at load time with a message naming the file and the
difference, so the new version never becomes ready and the previous one keeps its traffic."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from mlsd_predictors import CardError

_ORT_DATATYPES = {
    "tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64", "tensor(int64)": "INT64",
    "tensor(int32)": "INT32", "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


class RepositoryError(CardError):
    """A model file that cannot be served as its card describes it."""


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


def checked_session(model_dir: Path, file: str, card, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session for `file`, after checking it loads and matches the card's graph entry."""
    from ._model import onnx_session

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
    return session
