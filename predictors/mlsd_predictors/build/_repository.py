"""Writes a built version as a model repository, atomically (staged, then renamed into place).

    <out>/<case>/<V>/model-card.json                          summary over all variants
    <out>/<case>/<V>/kserve/<precision>/                      ONNX graphs, aux files, model-card.json
    <out>/<case>/<V>/triton/<precision>/<model>/config.pbtxt  (+ <model>/<V>/model.onnx [+ model.py, index])
    <out>/<case>/<V>/triton/<precision>/model-card.json       the variant's card, self-check.npz beside it
    <out>/<case>/<V>/triton-python/<precision>/...            same models, all on the Python backend
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from .._card import ModelCard, RepositoryCard, dump_card
from mlsd_contract import CARD_FILE, kserve_dir, repository_root, triton_dir, triton_python_dir
from .._errors import RepositoryExistsError
from ..casestudies import TritonStep
from ._triton import LAYOUTS, Layout, Serving, render_config, template


def write_triton(
    root: Path, layout: Layout, steps: list[TritonStep], version: int, kserve: Path, serving: Serving
) -> None:
    """One Triton model repository; model files are copied from the variant's KServe directory."""
    for step in steps:
        model_dir = root / step.name
        version_dir = model_dir / str(version)
        version_dir.mkdir(parents=True)  # ensembles need the (empty) version directory too
        (model_dir / "config.pbtxt").write_text(render_config(step, layout, serving))
        if step.graph_file:
            shutil.copyfile(kserve / step.graph_file, version_dir / "model.onnx")
        if step.index_file:
            shutil.copyfile(kserve / step.index_file, version_dir / step.index_file)
        if name := template(step, layout):
            source = resources.files("mlsd_predictors.build._triton_models").joinpath(name)
            (version_dir / "model.py").write_text(source.read_text())


def write_triton_card(root: Path, card: ModelCard, steps: list[TritonStep], version: int, kserve: Path) -> None:
    """The variant's card and self-check rows at the Triton layout's root, keyed by each graph's path
    in the layout (`<model>/<V>/model.onnx`). Triton loads model directories only, and the model puller
    copies only those: it reads these to refuse a gated variant and to re-run the self-check."""
    paths: dict[str, list[str]] = {}
    for step in steps:
        if step.graph_file:
            paths.setdefault(step.graph_file, []).append(f"{step.name}/{version}/model.onnx")
    check = card.self_check
    if check is not None:
        with np.load(kserve / check.file) as golden:
            arrays = {f"{path}|{key.split('|', 1)[1]}": golden[key]
                      for key in golden.files for path in paths.get(key.split("|", 1)[0], [])}
        np.savez(root / check.file, **arrays)
        check = check.model_copy(update={"tolerance": {
            path: tolerance for file, tolerance in check.tolerance.items() for path in paths.get(file, [])}})
    dump_card(card.model_copy(update={"self_check": check}), root / CARD_FILE)


def write_repository(
    out: Path,
    summary: RepositoryCard,
    variants: dict[str, tuple[ModelCard, Path]],
    steps: list[TritonStep],
    *,
    overwrite: bool,
    serving: Serving = Serving(),
) -> Path:
    """Writes `<out>/<case>/<V>` from each precision's card and built files (graphs, aux files);
    refuses an existing version unless `overwrite`."""
    final = repository_root(out, summary.case_study, summary.version)
    if final.exists() and not overwrite:
        raise RepositoryExistsError(f"{final} exists; versions are immutable (pass --overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{summary.version}.staging-", dir=final.parent))
    try:
        for precision, (card, built) in variants.items():
            kserve = kserve_dir(staging, precision)
            shutil.copytree(built, kserve)
            dump_card(card, kserve / CARD_FILE)
            for layout, directory in zip(LAYOUTS, (triton_dir, triton_python_dir), strict=True):
                write_triton(directory(staging, precision), layout, steps, summary.version, kserve, serving)
                write_triton_card(directory(staging, precision), card, steps, summary.version, kserve)
        dump_card(summary, staging / CARD_FILE)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
