"""Triton repositories: every config.pbtxt parses as tritonclient's ModelConfig and matches the graph."""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mlsd_predictors import PRECISIONS, ModelCard
from mlsd_predictors.build import Serving, render_config
from mlsd_predictors.casestudies import REGISTRY, TritonStep

from .conftest import VERSION

_TYPES = {"FP32": model_config_pb2.TYPE_FP32, "INT64": model_config_pb2.TYPE_INT64}


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def configs(root: Path, layout: str, precision: str) -> dict[str, model_config_pb2.ModelConfig]:
    return {p.parent.name: parse(p) for p in (root / layout / precision).glob("*/config.pbtxt")}


@pytest.mark.parametrize("layout", ["triton", "triton-python"])
def test_configs_parse_and_are_consistent(root: Path, case: str, layout: str) -> None:
    for precision in PRECISIONS:
        models = configs(root, layout, precision)
        assert case in models
        for name, config in models.items():
            assert config.name == name and config.max_batch_size == 64
            assert config.version_policy.latest.num_versions == 1
            if config.platform == "ensemble":
                assert {step.model_name for step in config.ensemble_scheduling.step} <= set(models)
                continue
            assert config.dynamic_batching.preferred_batch_size and config.dynamic_batching.max_queue_delay_microseconds > 0
            assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
            on_python = (root / layout / precision / name / str(VERSION) / "model.py").is_file()
            assert (config.backend == "python") == on_python
            assert (config.platform == "onnxruntime_onnx") == (not on_python)
            if layout == "triton-python":
                assert on_python


def test_entry_point_matches_the_card(root: Path, cards: dict[str, ModelCard], case: str) -> None:
    """The Triton entry model takes the primary graph's inputs (names, types, dims without batch)."""
    for precision, card in cards.items():
        entry = configs(root, "triton", precision)[case]
        graph_inputs = {s.name: s for g in card.graphs for s in g.signature.inputs}
        for tensor in entry.input:
            spec = graph_inputs[tensor.name]
            assert tensor.data_type == _TYPES[spec.datatype]
            assert list(tensor.dims) == spec.shape[1:]


def test_video_recommendation_is_a_two_stage_ensemble(repository_out: Path) -> None:
    models = configs(repository_out / "video-recommendation" / str(VERSION), "triton", "fp32")
    ensemble = models["video-recommendation"]
    steps = [s.model_name for s in ensemble.ensemble_scheduling.step]
    assert steps == ["video-recommendation-retrieval", "video-recommendation-ranking"]
    assert models["video-recommendation-ranking"].platform == "onnxruntime_onnx"
    assert models["video-recommendation-retrieval"].backend == "python"  # ANN search runs in Python
    assert "candidate_ids" in set(ensemble.ensemble_scheduling.step[0].output_map.values())
    assert "candidate_ids" in set(ensemble.ensemble_scheduling.step[1].input_map.values())


def test_render_config_is_pure_and_parses() -> None:
    step = TritonStep("m", "onnx", inputs=(("x", "FP32", (3,)),), outputs=(("y", "INT64", (-1,)),), graph_file="model.onnx")
    text = render_config(step, "triton", Serving(max_batch_size=8, preferred_batch_sizes=(4, 8, 16), instances=2))
    assert text == render_config(step, "triton", Serving(max_batch_size=8, preferred_batch_sizes=(4, 8, 16), instances=2))
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.instance_group[0].count == 2 and list(config.output[0].dims) == [-1]


@pytest.mark.parametrize("name", ["onnx_model.py", "ann_model.py"])
def test_python_backend_models_are_valid_python(name: str) -> None:
    source = resources.files("mlsd_predictors.build._triton_models").joinpath(name).read_text()
    tree = ast.parse(source)
    classes = {n.name: {f.name for f in n.body if isinstance(f, ast.FunctionDef)} for n in tree.body if isinstance(n, ast.ClassDef)}
    assert classes["TritonPythonModel"] >= {"initialize", "execute"}


def test_every_case_names_its_entry_point_after_itself() -> None:
    for name, cls in REGISTRY.items():
        assert name in {s.name for s in cls(small=True, seed=0).triton_steps()}
