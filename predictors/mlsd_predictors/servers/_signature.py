"""Request tensors checked against a model signature before any inference runs.

The order of checks is fixed so the error a client sees is the most basic one: names, then
datatypes, then shapes and batch size, then the decoded data (size, finiteness, value range).
Datatypes use the Open Inference Protocol names (FP32, INT64, ...) and one mapping to numpy:
tritonclient's `triton_to_np_dtype`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from ._errors import (
    BatchTooLarge, ServingError, MalformedRequest, MissingInput, NonFiniteValue, UnknownInput, ValueOutOfRange,
    WrongDatatype, WrongShape,
)

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64", "BF16"})


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor; `shape` excludes the batch axis (every mlsd model batches on axis 0)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    minimum: float | None = None
    maximum: float | None = None
    """Inclusive bounds for values where out-of-range data would index past a table."""

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(triton_to_np_dtype(self.datatype))

    def to_metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.shape]}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int

    def input(self, name: str) -> TensorSpec:
        return next(spec for spec in self.inputs if spec.name == name)


@dataclass(frozen=True)
class RawTensor:
    """A request tensor as the wire delivered it; `decode` materialises its data (may raise)."""

    name: object
    datatype: object
    shape: object
    decode: Callable[[], np.ndarray]


def _shape(value: object, field: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise MalformedRequest(field, f"shape must be a list of integers, got {value!r}")
    if any(d < 0 for d in value):
        raise WrongShape(field, f"dimensions must be >= 0, got {list(value)}")
    return tuple(value)


def check_inputs(tensors: Sequence[RawTensor], signature: Signature) -> dict[str, np.ndarray]:
    """Validated numpy arrays keyed by input name, or the first ServingError found."""
    expected = {spec.name: spec for spec in signature.inputs}
    seen: dict[str, int] = {}
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor.name, str) or tensor.name not in expected:
            raise UnknownInput(f"inputs[{i}].name", f"unknown input {tensor.name!r}; "
                               f"this model takes {', '.join(expected)}")
        if tensor.name in seen:
            raise MalformedRequest(f"inputs[{i}].name", f"input {tensor.name!r} given twice")
        seen[tensor.name] = i
    missing = [name for name in expected if name not in seen]
    if missing:
        raise MissingInput(f"inputs.{missing[0]}", f"missing input {missing[0]!r} "
                           f"(expected {', '.join(expected)})")

    batch: int | None = None
    for i, tensor in enumerate(tensors):
        spec = expected[tensor.name]  # type: ignore[index]
        if tensor.datatype != spec.datatype:
            raise WrongDatatype(f"inputs[{i}].datatype",
                                f"input {spec.name!r} must be {spec.datatype}, got {tensor.datatype!r}")
        shape = _shape(tensor.shape, f"inputs[{i}].shape")
        if len(shape) != len(spec.shape) + 1 or shape[1:] != spec.shape:
            raise WrongShape(f"inputs[{i}].shape",
                             f"input {spec.name!r} must have shape [batch, {', '.join(map(str, spec.shape))}], "
                             f"got {list(shape)}")
        if shape[0] < 1:
            raise WrongShape(f"inputs[{i}].shape", f"input {spec.name!r} has an empty batch")
        if shape[0] > signature.max_batch_size:
            raise BatchTooLarge(f"inputs[{i}].shape[0]", f"batch of {shape[0]} exceeds the limit of "
                                f"{signature.max_batch_size}")
        if batch is not None and shape[0] != batch:
            raise WrongShape(f"inputs[{i}].shape[0]", f"batch {shape[0]} differs from the other inputs' {batch}")
        batch = shape[0]

    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(tensors):
        spec = expected[tensor.name]  # type: ignore[index]
        arrays[spec.name] = decode(tensor, spec, i)
    return arrays


def decode(tensor: RawTensor, spec: TensorSpec, index: int) -> np.ndarray:
    field = f"inputs[{index}].data"
    shape = tuple(tensor.shape)  # type: ignore[arg-type]
    try:
        array = np.asarray(tensor.decode())
    except ServingError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, AttributeError) as err:
        raise MalformedRequest(field, f"cannot decode input {spec.name!r} as {spec.datatype}: {err}") from err
    if array.dtype == object or array.dtype.kind in "USV":
        raise MalformedRequest(field, f"input {spec.name!r} holds non-numeric data")
    if array.size != math.prod(shape):
        raise WrongShape(field, f"input {spec.name!r} has {array.size} values, its shape {list(shape)} "
                         f"needs {math.prod(shape)}")
    try:
        array = array.reshape(shape).astype(spec.numpy_dtype, copy=False, casting="same_kind")
    except TypeError as err:
        raise WrongDatatype(field, f"input {spec.name!r} values are not {spec.datatype}: {err}") from err
    if spec.datatype in FLOAT_TYPES:
        finite = np.isfinite(array)
        if not finite.all():
            position = tuple(int(x) for x in np.argwhere(~finite)[0])
            raise NonFiniteValue(field, f"input {spec.name!r} has a non-finite value at {list(position)}")
    if spec.minimum is not None or spec.maximum is not None:
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        bad = (array < low) | (array > high)
        if bad.any():
            position = tuple(int(x) for x in np.argwhere(bad)[0])
            raise ValueOutOfRange(field, f"input {spec.name!r} value {array[position]!r} at {list(position)} "
                                  f"is outside [{spec.minimum}, {spec.maximum}]")
    return np.ascontiguousarray(array)
