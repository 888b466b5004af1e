"""Triton `config.pbtxt` for each model of a case study, rendered from its TritonSteps (pure).

Two layouts of the same models, same names and tensors:
  triton/         the NGC tritonserver image: plain ONNX models on `platform: "onnxruntime_onnx"`;
                  steps that need Python (ANN search) on the Python backend; ensembles as ensembles.
  triton-python/  every non-ensemble model on the Python backend, its model.py running the
                  model.onnx beside it with onnxruntime (the tritonserver from nvidia-pytriton
                  only ships the Python backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlsd_contract import TRITON_LAYOUT, TRITON_PYTHON_LAYOUT
from ..casestudies import TritonStep

Layout = Literal["triton", "triton-python"]   # TRITON_LAYOUT, TRITON_PYTHON_LAYOUT
LAYOUTS: tuple[Layout, ...] = (TRITON_LAYOUT, TRITON_PYTHON_LAYOUT)  # type: ignore[assignment]
_TYPES = {
    "FP32": "TYPE_FP32", "FP16": "TYPE_FP16", "INT64": "TYPE_INT64", "INT32": "TYPE_INT32", "BYTES": "TYPE_STRING",
}  # fmt: skip


@dataclass(frozen=True)
class Serving:
    """Batching and instances shared by every model of a build."""

    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8, 32, 64)
    max_queue_delay_microseconds: int = 2000
    instances: int = 1


def template(step: TritonStep, layout: Layout) -> str | None:
    """Which model.py (under build/_triton_models) a step needs in a layout, if any."""
    if step.kind == "ann":
        return "ann_model.py"
    if step.kind == "onnx" and layout == TRITON_PYTHON_LAYOUT:
        return "onnx_model.py"
    return None


def _tensors(kind: str, tensors: tuple[tuple[str, str, tuple[int, ...]], ...]) -> list[str]:
    lines = [f"{kind} ["]
    for i, (name, datatype, dims) in enumerate(tensors):
        comma = "," if i < len(tensors) - 1 else ""
        shape = ", ".join(map(str, dims))
        lines.append(f'  {{ name: "{name}" data_type: {_TYPES[datatype]} dims: [ {shape} ] }}{comma}')
    lines.append("]")
    return lines


def render_config(step: TritonStep, layout: Layout, serving: Serving = Serving()) -> str:
    lines = [f'name: "{step.name}"']
    if step.kind == "ensemble":
        lines.append('platform: "ensemble"')
    elif template(step, layout):
        lines.append('backend: "python"')
    else:
        lines.append('platform: "onnxruntime_onnx"')
    lines += [f"max_batch_size: {serving.max_batch_size}", "version_policy: { latest: { num_versions: 1 } }"]
    lines += _tensors("input", step.inputs) + _tensors("output", step.outputs)
    if step.kind == "ensemble":
        lines.append("ensemble_scheduling {")
        for model, inputs, outputs in step.steps:
            lines += ["  step {", f'    model_name: "{model}"', "    model_version: -1"]
            lines += [f'    input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
            lines += [f'    output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"
    sizes = ", ".join(str(s) for s in serving.preferred_batch_sizes if s <= serving.max_batch_size)
    lines += [
        f"dynamic_batching {{ preferred_batch_size: [ {sizes} ] "
        f"max_queue_delay_microseconds: {serving.max_queue_delay_microseconds} }}",
        f"instance_group [ {{ kind: KIND_CPU count: {serving.instances} }} ]",
    ]
    parameters = dict(step.parameters)
    if step.index_file:
        parameters["index_file"] = step.index_file
    for key, value in sorted(parameters.items()):
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"
