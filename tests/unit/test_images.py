"""The image tooling's pure parts: what a Dockerfile reads, the inputs digest, tritonserver's flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd_devcluster import images
from mlsd_predictors.servers.tritonserver import split_repositories


def _tree(root: Path) -> images.Image:
    (root / "pkg").mkdir()
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    (root / "setup.cfg").write_text("[x]\n")
    (root / "Dockerfile").write_text(
        "ARG BASE=x\nFROM ${BASE} AS build\nCOPY setup.cfg ./\nCOPY --chown=1:1 pkg \\\n    /src/pkg\n"
        "FROM ${BASE}\nCOPY --from=build /src /src\n")
    return images.Image("t", "Dockerfile")


def test_copy_sources_are_the_context_paths_not_stage_copies(tmp_path) -> None:
    _tree(tmp_path)
    assert images.copy_sources(tmp_path / "Dockerfile") == ["setup.cfg", "pkg"]


def test_inputs_digest_follows_sources_base_and_target_not_bytecode(tmp_path) -> None:
    image = _tree(tmp_path)
    first = images.inputs_digest(image, tmp_path, "base-1")
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"changed")
    assert images.inputs_digest(image, tmp_path, "base-1") == first
    assert images.inputs_digest(image, tmp_path, "base-2") != first
    assert images.inputs_digest(images.Image("t", "Dockerfile", "build"), tmp_path, "base-1") != first
    (tmp_path / "pkg" / "a.py").write_text("A = 2\n")
    assert images.inputs_digest(image, tmp_path, "base-1") != first


def test_a_missing_copy_source_is_named(tmp_path) -> None:
    _tree(tmp_path)
    (tmp_path / "setup.cfg").unlink()
    with pytest.raises(images.ImageBuildFailed, match="setup.cfg"):
        images.inputs_digest(images.Image("t", "Dockerfile"), tmp_path, "b")


def test_every_image_is_under_the_project_repository() -> None:
    assert {i.name for i in images.IMAGES} == {"operator", "predictor", "tritonserver", "trainer"}
    assert all(i.ref.startswith("ghcr.io/mlsd-serving/") for i in images.IMAGES)


def test_tritonserver_takes_ngc_flags_in_both_spellings() -> None:
    repositories, rest = split_repositories(
        ["--model-repository=/models", "--model-store", "/extra", "--http-port=8000", "--strict-readiness=true"])
    assert repositories == [Path("/models"), Path("/extra")]
    assert rest == ["--http-port=8000", "--strict-readiness=true"]
    with pytest.raises(SystemExit, match="needs a directory"):
        split_repositories(["--model-repository"])
