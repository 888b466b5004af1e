"""The load-time self-check: every variant carries golden rows, and a predictor refuses a variant
that does not compute them where it runs.

The other-CPU cases run the check in a process under qemu-user emulating an AVX2-only CPU without
VNNI or AVX-512 (`qemu-x86_64 -cpu Haswell-v4`): onnxruntime then selects that CPU's int8 kernels
for real. So these tests hold on any CPU of this machine kind, whichever instruction sets it has."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from mlsd_predictors import PRECISIONS
from mlsd_predictors.build import _quantize
from mlsd_predictors.servers._card import load_servable
from mlsd_predictors.servers._integrity import SelfCheckFailed, checked_session, self_check

from .conftest import VERSION

EMULATED_CPU = "Haswell-v4"        # AVX2 + FMA, no AVX-512, no VNNI
CHECK = """
import json, sys
from pathlib import Path
from mlsd_predictors.servers._card import load_servable
from mlsd_predictors.servers._integrity import SelfCheckFailed, checked_session
from numpy.core._multiarray_umath import __cpu_features__ as cpu
assert cpu["AVX2"] and not cpu["AVX512F"], "the emulated CPU is not AVX2-only"
results = {}
for variant in sys.argv[1:]:
    card = load_servable(Path(variant))
    try:
        for graph in card.graphs:
            checked_session(Path(variant), graph.file, card)
        results[variant] = "ok"
    except SelfCheckFailed as err:
        results[variant] = str(err)
print(json.dumps(results))
"""


def on_emulated_cpu(*variants: Path) -> dict[str, str]:
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.fail("qemu-x86_64 is missing: hack/install-test-deps.sh installs it (apt-get install qemu-user)")
    result = subprocess.run([qemu, "-cpu", EMULATED_CPU, sys.executable, "-c", CHECK, *map(str, variants)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def variant(repository_out: Path, case: str, precision: str) -> Path:
    return repository_out / case / str(VERSION) / "kserve" / precision


def test_every_variant_passes_its_self_check_where_it_was_built(root: Path) -> None:
    for precision in PRECISIONS:
        directory = root / "kserve" / precision
        card = load_servable(directory)
        for graph in card.graphs:
            session = checked_session(directory, graph.file, card)
            assert self_check(directory, graph.file, session, card) <= card.self_check.tolerance[graph.file]


def tampered(source: Path, tmp_path: Path, scale: float) -> Path:
    """A copy of the variant whose recorded outputs are off by `scale` x the tolerance."""
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    card = load_servable(copy)
    with np.load(copy / card.self_check.file) as golden:
        arrays = {k: golden[k] for k in golden.files}
    graph = card.graphs[0].file
    key = next(k for k in arrays if k.startswith(f"{graph}|out|"))
    arrays[key] = arrays[key] + np.float32(scale * card.self_check.tolerance[graph])
    np.savez(copy / card.self_check.file, **arrays)
    return copy


def test_outputs_beyond_the_tolerance_are_refused_naming_both_machines(repository_out: Path, tmp_path: Path) -> None:
    source = variant(repository_out, "ad-click-prediction", "int8")
    card = load_servable(source)
    checked_session(tampered(source, tmp_path / "within", 0.5), "model.onnx", card)     # within: served
    refused = tampered(source, tmp_path / "beyond", 3.0)
    with pytest.raises(SelfCheckFailed) as raised:
        checked_session(refused, "model.onnx", card)
    message = str(raised.value)
    assert "self-check failed" in message and "click_probability" in message and "tolerance" in message
    assert "built and gated on" in message and "serving on" in message and "onnxruntime" in message


def test_unreadable_rows_are_refused(repository_out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "int8"
    shutil.copytree(variant(repository_out, "harmful-content", "int8"), copy)
    card = load_servable(copy)
    (copy / card.self_check.file).write_bytes(b"not an npz")
    with pytest.raises(SelfCheckFailed, match="cannot be read"):
        checked_session(copy, "model.onnx", card)


def test_a_card_without_self_check_rows_still_loads(repository_out: Path, tmp_path: Path) -> None:
    """Variants built before self-checks existed keep serving (their card has no selfCheck)."""
    copy = tmp_path / "int8"
    shutil.copytree(variant(repository_out, "ad-click-prediction", "int8"), copy)
    raw = json.loads((copy / "model-card.json").read_text())
    del raw["selfCheck"]
    (copy / "model-card.json").write_text(json.dumps(raw))
    card = load_servable(copy)
    assert self_check(copy, "model.onnx", checked_session(copy, "model.onnx", card), card) is None


def eight_bit_weights(repository_out: Path, tmp_path: Path) -> Path:
    """Visual search's int8 variant re-quantized with 8-bit weights (the format before 7-bit), its
    golden rows recorded here: on a CPU without VNNI its int8 products saturate."""
    source = variant(repository_out, "visual-search", "int8")
    copy = tmp_path / "int8-8bit"
    shutil.copytree(source, copy)
    card = load_servable(copy)
    with np.load(copy / card.self_check.file) as golden:
        arrays = {k: golden[k] for k in golden.files}
    calibration = ({"image": arrays["model.onnx|in|image"]},)
    _quantize.to_int8(SimpleNamespace(quantization="static", calibration=calibration),
                      variant(repository_out, "visual-search", "fp32") / "model.onnx", copy / "model.onnx",
                      reduce_range=False)
    session = ort.InferenceSession(str(copy / "model.onnx"), providers=["CPUExecutionProvider"])
    arrays["model.onnx|out|embedding"] = session.run(None, calibration[0])[0]
    np.savez(copy / card.self_check.file, **arrays)
    return copy


def test_int8_variants_compute_the_same_on_an_avx2_only_cpu(repository_out: Path, tmp_path: Path) -> None:
    """The variants `mlsd build` writes (7-bit weights) pass their self-check on an AVX2-only CPU,
    static (visual search, harmful content) and dynamic (ad clicks, video recommendation) alike; the
    same model with 8-bit weights, recorded here, is refused there: the check sees what the
    instruction set changes."""
    built = [variant(repository_out, case, "int8") for case in
             ("visual-search", "harmful-content", "ad-click-prediction", "video-recommendation")]
    eight_bit = eight_bit_weights(repository_out, tmp_path)
    checked_session(eight_bit, "model.onnx", load_servable(eight_bit))     # passes where it was recorded
    results = on_emulated_cpu(*built, eight_bit)
    assert all(results[str(v)] == "ok" for v in built), results
    assert "self-check failed" in results[str(eight_bit)], results


def triton_layout(repository_out: Path, case: str, precision: str, tmp_path: Path) -> Path:
    copy = tmp_path / f"{case}-{precision}"
    shutil.copytree(repository_out / case / str(VERSION) / "triton" / precision, copy)
    return copy


def test_the_triton_layout_carries_the_card_and_rows_keyed_by_model_path(repository_out: Path) -> None:
    for case in ("visual-search", "video-recommendation"):
        root = repository_out / case / str(VERSION) / "triton" / "int8"
        card = load_servable(root)
        assert card.self_check.tolerance and all(
            (root / path).is_file() and path.endswith(f"/{VERSION}/model.onnx") for path in card.self_check.tolerance)


@pytest.mark.parametrize("case", ["visual-search", "video-recommendation"])
def test_the_model_puller_runs_the_self_check_before_anything_lands(repository_out: Path, tmp_path: Path,
                                                                    case: str) -> None:
    from mlsd_predictors.pull import PullError, Rewrite, pull

    source = triton_layout(repository_out, case, "int8", tmp_path)
    assert case in pull(str(source), tmp_path / "ok", case, Rewrite("KIND_CPU"))
    card = load_servable(source)
    path = next(iter(card.self_check.tolerance))
    with np.load(source / card.self_check.file) as golden:
        arrays = {k: golden[k] for k in golden.files}
    key = next(k for k in arrays if k.startswith(f"{path}|out|"))
    arrays[key] = arrays[key] + np.float32(3 * card.self_check.tolerance[path])
    np.savez(source / card.self_check.file, **arrays)
    with pytest.raises(PullError, match="self-check failed"):
        pull(str(source), tmp_path / "refused", case, Rewrite("KIND_CPU"))
    assert not any((tmp_path / "refused").iterdir()), "a refused variant must leave the model directory empty"


def test_the_model_puller_refuses_a_gated_variant(repository_out: Path, tmp_path: Path) -> None:
    from mlsd_predictors.pull import main

    source = triton_layout(repository_out, "ad-click-prediction", "int8", tmp_path)
    raw = json.loads((source / "model-card.json").read_text())
    raw.update(servable=False, notServableReason="auc is 2.00% worse than fp32 (relative), over the 1.00% threshold")
    (source / "model-card.json").write_text(json.dumps(raw))
    assert main([f"--source={source}", f"--dest={tmp_path / 'dest'}", "--model-name=ad-click-prediction",
                 "--instance-kind=KIND_CPU"]) == 2
