"""The Dockerfiles, read as text: what the image tier cannot build here is at least checked here.

The NGC-derived Triton Dockerfile cannot be built where nvcr.io is unreachable; it is parsed, and
its pins are checked against pyproject's `triton` extra. For the others: every COPY source exists,
every image runs as the numeric non-root user its pods declare, and each is in the build list.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from mlsd_devcluster import images

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = ["operator/Dockerfile", "predictors/Dockerfile", "predictors/Dockerfile.triton-ngc"]


def instructions(path: Path) -> list[tuple[str, list[str]]]:
    text = path.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = shlex.split(line, posix=True)
        out.append((words[0].upper(), words[1:]))
    return out


def stages(path: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Stage name (or its index) -> its instructions, the FROM line first."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for op, args in instructions(path):
        if op == "FROM":
            name = args[2] if len(args) >= 3 and args[1].upper() == "AS" else str(len(out))
            out[name] = [(op, args)]
        elif out:
            out[list(out)[-1]].append((op, args))
    return out


def leaf_stages(path: Path) -> list[str]:
    """The stages no other stage builds on (FROM) or copies from (COPY --from): the images."""
    all_stages = stages(path)
    used = set()
    for instructions_ in all_stages.values():
        for op, args in instructions_:
            if op == "FROM":
                used.add(args[0])
            used.update(a.split("=", 1)[1] for a in args if op == "COPY" and a.startswith("--from="))
    return [name for name in all_stages if name not in used]


def pins(extra: str) -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["optional-dependencies"][extra]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement)
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_copy_sources_exist(dockerfile) -> None:
    sources = images.copy_sources(REPO / dockerfile)
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile} copies {source}, which does not exist"


@pytest.mark.parametrize("dockerfile, stage, user", [
    ("operator/Dockerfile", "1", "65532:65532"),          # the chart's runAsUser
    ("predictors/Dockerfile", "trainer", "1000:1000"),
    ("predictors/Dockerfile", "triton", "1000:1000"),     # the operator's restricted pod security
    ("predictors/Dockerfile", "6", "1000:1000"),          # the predictor (default target)
    ("predictors/Dockerfile.triton-ngc", "0", "1000:1000"),
])
def test_images_run_as_the_numeric_user_their_pods_declare(dockerfile, stage, user) -> None:
    users = [args[0] for op, args in stages(REPO / dockerfile)[stage] if op == "USER"]
    assert users and users[-1] == user, f"{dockerfile} stage {stage}: USER {users}"


def test_every_target_is_built_by_the_image_tooling() -> None:
    named = {(image.dockerfile, image.target) for image in images.IMAGES}
    for dockerfile in ("operator/Dockerfile", "predictors/Dockerfile"):
        leaves = leaf_stages(REPO / dockerfile)
        final = list(stages(REPO / dockerfile))[-1]
        assert leaves[-1] == final and (dockerfile, None) in named
        for target in leaves[:-1]:
            assert (dockerfile, target) in named, f"{dockerfile} --target {target} is not in images.IMAGES"
    assert leaf_stages(REPO / "predictors/Dockerfile") == ["trainer", "triton", "6"]


def test_ngc_triton_dockerfile_derives_from_ngc_with_the_triton_extra_pins() -> None:
    path = REPO / "predictors/Dockerfile.triton-ngc"
    ops = instructions(path)
    args = {a[0].split("=")[0]: a[0].split("=", 1)[1] for op, a in ops if op == "ARG" and "=" in a[0]}
    assert args["TRITON_IMAGE"].startswith("nvcr.io/nvidia/tritonserver:"), args
    assert ("FROM", ["${TRITON_IMAGE}"]) in ops
    installed = {}
    for op, words in ops:
        if op == "RUN" and "pip" in words:
            for word in words:
                if "==" in word:
                    name, version = word.split("==")
                    installed[name.lower()] = version
    extra = pins("triton")
    # The GPU build of the same onnxruntime, the same usearch, the numpy of constraints.txt.
    assert installed["onnxruntime-gpu"] == extra["onnxruntime"]
    assert installed["usearch"] == extra["usearch"]
    constraints = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                       if "==" in line and not line.startswith("#"))
    assert installed["numpy"] == constraints["numpy"]
    # NGC's tritonserver takes the operator's command line: nothing overrides its entrypoint.
    assert not any(op in ("ENTRYPOINT", "CMD") for op, _ in ops)


def test_triton_stage_takes_ngc_command_line() -> None:
    """The CPU Triton image answers to `tritonserver`, the command the operator renders."""
    build = stages(REPO / "predictors/Dockerfile")["triton-build"]
    runs = " ".join(" ".join(args) for op, args in build if op == "RUN")
    assert "/opt/mlsd/bin/tritonserver" in runs and "mlsd_predictors.servers.tritonserver" in runs
