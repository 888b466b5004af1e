"""`python -m mlsd_predictors.pull`: copy a Triton repository and fit its configs to the pod."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlsd_predictors.pull import PullError, Rewrite, main, parse_config, pull

ONNX_MODEL = """
name: "ad-click-prediction"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [{ name: "dense", data_type: TYPE_FP32, dims: [ 13 ] }]
output [{ name: "probability", data_type: TYPE_FP32, dims: [ 1 ] }]
instance_group [{ kind: KIND_GPU, count: 2, gpus: [ 0 ] }]
dynamic_batching { preferred_batch_size: [ 8, 64 ] max_queue_delay_microseconds: 100 }
"""

ENSEMBLE = """
name: "video-recommendation"
platform: "ensemble"
max_batch_size: 64
input [{ name: "user", data_type: TYPE_FP32, dims: [ 8 ] }]
output [{ name: "ids", data_type: TYPE_INT64, dims: [ 10 ] }]
ensemble_scheduling { step [{ model_name: "retrieval" model_version: -1
  input_map { key: "user" value: "user" } output_map { key: "ids" value: "ids" } }] }
"""


def repo(root: Path, models: dict[str, str], version: str = "1") -> Path:
    for name, config in models.items():
        (root / name / version).mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        (root / name / version / "model.onnx").write_bytes(b"onnx")
    return root


def test_rewrites_kind_batch_and_delay(tmp_path: Path) -> None:
    source = repo(tmp_path / "src", {"ad-click-prediction": ONNX_MODEL})
    names = pull(str(source), tmp_path / "models", "ad-click-prediction", Rewrite("KIND_CPU", 32, 5000))
    assert names == ["ad-click-prediction"]
    config = parse_config(tmp_path / "models" / "ad-click-prediction" / "config.pbtxt")
    assert config.max_batch_size == 32
    assert [g.kind for g in config.instance_group] == [0 + 2]   # KIND_CPU == 2
    assert list(config.instance_group[0].gpus) == []
    assert config.instance_group[0].count == 2
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert (tmp_path / "models" / "ad-click-prediction" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".pull-")]


def test_gpu_kind_and_missing_instance_group(tmp_path: Path) -> None:
    config_text = ONNX_MODEL.replace('instance_group [{ kind: KIND_GPU, count: 2, gpus: [ 0 ] }]', "")
    source = repo(tmp_path / "src", {"ad-click-prediction": config_text})
    pull(f"file://{source}", tmp_path / "models", "ad-click-prediction", Rewrite("KIND_GPU"))
    config = parse_config(tmp_path / "models" / "ad-click-prediction" / "config.pbtxt")
    assert [(g.kind, g.count) for g in config.instance_group] == [(1, 1)]   # KIND_GPU == 1
    assert config.max_batch_size == 64   # untouched without the flag


def test_ensemble_gets_batch_size_but_no_scheduler(tmp_path: Path) -> None:
    source = repo(tmp_path / "src", {"video-recommendation": ENSEMBLE,
                                     "retrieval": ONNX_MODEL.replace("ad-click-prediction", "retrieval")})
    pull(str(source), tmp_path / "models", "video-recommendation", Rewrite("KIND_CPU", 16, 200))
    ensemble = parse_config(tmp_path / "models" / "video-recommendation" / "config.pbtxt")
    step = parse_config(tmp_path / "models" / "retrieval" / "config.pbtxt")
    assert ensemble.max_batch_size == step.max_batch_size == 16
    assert not ensemble.instance_group and not ensemble.HasField("dynamic_batching")
    assert step.dynamic_batching.max_queue_delay_microseconds == 200


def test_idempotent_over_existing_dest(tmp_path: Path) -> None:
    source = repo(tmp_path / "src", {"ad-click-prediction": ONNX_MODEL})
    for _ in range(2):
        pull(str(source), tmp_path / "models", "ad-click-prediction", Rewrite("KIND_CPU", 8))
    assert parse_config(tmp_path / "models" / "ad-click-prediction" / "config.pbtxt").max_batch_size == 8


@pytest.mark.parametrize("source, message", [
    ("/models/../etc", "'..' path segments"),
    ("file:///a/b/../../etc", "'..' path segments"),
    ("http://example.invalid/x", "unsupported source scheme"),
])
def test_refuses_bad_sources(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(PullError, match=message):
        pull(source, tmp_path / "models", "m", Rewrite("KIND_CPU"))


@pytest.mark.parametrize("name", ["../m", "a/b", "..", ""])
def test_refuses_non_plain_model_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(PullError, match="plain model name"):
        pull(str(tmp_path), tmp_path / "models", name, Rewrite("KIND_CPU"))


def test_refuses_links_leaving_the_repository(tmp_path: Path) -> None:
    source = repo(tmp_path / "src", {"ad-click-prediction": ONNX_MODEL})
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", source / "ad-click-prediction" / "1" / "weights.bin")
    with pytest.raises(PullError, match="links outside the repository"):
        pull(str(source), tmp_path / "models", "ad-click-prediction", Rewrite("KIND_CPU"))


@pytest.mark.parametrize("config, message", [
    (None, "missing model config"),
    ("name: \"ad-click-prediction\"\nmax_batch_size: [oops", "corrupt model config"),
    ("name: \"other\"\nmax_batch_size: 4", "names the model 'other'"),
])
def test_refuses_missing_or_corrupt_configs(tmp_path: Path, config: str | None, message: str) -> None:
    source = repo(tmp_path / "src", {"ad-click-prediction": config or ""})
    if config is None:
        (source / "ad-click-prediction" / "config.pbtxt").unlink()
    with pytest.raises(PullError, match=message):
        pull(str(source), tmp_path / "models", "ad-click-prediction", Rewrite("KIND_CPU"))


def test_refuses_missing_model_version_and_non_batching(tmp_path: Path) -> None:
    source = repo(tmp_path / "src", {"ad-click-prediction": ONNX_MODEL})
    with pytest.raises(PullError, match="model 'visual-search' not found"):
        pull(str(source), tmp_path / "m1", "visual-search", Rewrite("KIND_CPU"))
    no_version = tmp_path / "src2" / "ad-click-prediction"
    no_version.mkdir(parents=True)
    (no_version / "config.pbtxt").write_text(ONNX_MODEL)
    with pytest.raises(PullError, match="no numeric version directory"):
        pull(str(no_version.parent), tmp_path / "m2", "ad-click-prediction", Rewrite("KIND_CPU"))
    flat = repo(tmp_path / "src3", {"ad-click-prediction": ONNX_MODEL.replace("max_batch_size: 64", "")})
    with pytest.raises(PullError, match="does not batch"):
        pull(str(flat), tmp_path / "m3", "ad-click-prediction", Rewrite("KIND_CPU", 8))


def test_remote_scheme_without_storage_helper_names_the_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "kserve_storage", None)
    with pytest.raises(PullError, match="pip install kserve-storage"):
        pull("s3://bucket/models/ad/1/triton/fp32", tmp_path / "models", "ad", Rewrite("KIND_CPU"))


def test_module_entry_point(tmp_path: Path) -> None:
    source = repo(tmp_path / "src", {"ad-click-prediction": ONNX_MODEL})
    ok = subprocess.run([sys.executable, "-m", "mlsd_predictors.pull", f"--source={source}",
                         f"--dest={tmp_path / 'models'}", "--model-name=ad-click-prediction",
                         "--instance-kind=KIND_CPU", "--max-batch-size=4", "--max-queue-delay-us=50"],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "mlsd_predictors.pull", f"--source={tmp_path / 'nope'}",
                          f"--dest={tmp_path / 'models'}", "--model-name=x", "--instance-kind=KIND_CPU"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "source is not a directory" in bad.stderr
    assert main([f"--source={source}", f"--dest={tmp_path / 'm'}", "--model-name=ad-click-prediction",
                 "--instance-kind=KIND_GPU"]) == 0
