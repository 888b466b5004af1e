"""Image tier: the project's images, built here from its Dockerfiles, started as the cluster would.

The session builds (or finds unchanged, by the digest of their inputs) every image with
`mlsd_devcluster.images` (what `hack/images.sh build` runs), then each test starts containers with
podman using the containers, security contexts and volumes that the operator or the chart render
(see `tests/_support/pods.py`). No image builder installed FAILS the tier naming `hack/install-test-deps.sh`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._support import pods
from tests._support.models import serving_models


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """name -> reference of every image, built or found unchanged."""
    return pods.build_or_fail()


@pytest.fixture(scope="session")
def test_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 of every case study (small), as `mlsd build --small` writes them; shared with the
    serving tier (MLSD_TEST_MODELS reuses a built repository across runs)."""
    out = Path(os.environ.get("MLSD_TEST_MODELS") or tmp_path_factory.getbasetemp() / "serving-models")
    root = serving_models(out)
    # The containers run as uid 1000: the stand-in volume must be readable by it, as a PV would be.
    for path in (root, *root.rglob("*")):
        path.chmod(path.stat().st_mode | 0o005 | (0o001 if path.is_dir() else 0))
    return root
