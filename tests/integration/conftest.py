"""Integration tier: a real kube-apiserver (+ etcd, controller-manager, scheduler, kwok nodes).

Fixtures (stable interface; other integration tests build on it):

- `control_plane` (session): a started `mlsd_devcluster.ControlPlane` with
  controller-manager, scheduler and kwok with 2 CPU nodes (`kwok-cpu-0/1`) and 2 GPU nodes
  (`kwok-gpu-0/1`: 4 `nvidia.com/gpu` each, label `nvidia.com/gpu.product=NVIDIA-L4`,
  `mlsd.io/accelerator=gpu`, taint `nvidia.com/gpu=present:NoSchedule`; CPU nodes carry
  `mlsd.io/accelerator=cpu`). Use `.kubeconfig_path` (admin, system:masters), `.server`,
  `.kubectl(*args, check=True, input=None)` -> CompletedProcess (raises KubectlError with stderr),
  `.api_client()` -> a new `kubernetes.client.ApiClient`. Logs: `<.work_dir>/<component>.log`.
- `api_client` (session): one shared `kubernetes.client.ApiClient` for the admin identity.
- `namespace` (function): the name (str) of a fresh namespace, unique per test, deleted after the
  test (without waiting for its contents to be finalized).
- `wait_for` (session): a function `wait_for(predicate, timeout=30, what="...")` that polls until
  `predicate()` is truthy and returns its value; fails the test naming `what` on timeout.

Every test under tests/integration is marked `integration`. Missing binaries FAIL the tests with a
message naming `hack/control-plane.sh build`: a tier that silently skips proves nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlsd_devcluster import ControlPlane, MissingBinariesError
from tests._support import poll

if TYPE_CHECKING:
    from tests.integration.rollout_harness import PrometheusServer

T = TypeVar("T")
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's control plane; see the module docstring for what it offers."""
    # Under pytest's basetemp, so the logs of the last few runs stay around for reading.
    plane = ControlPlane(
        controller_manager=True,
        scheduler=True,
        kwok=True,
        work_dir=tmp_path_factory.mktemp("control-plane"),
    )
    try:
        plane.start()
    except MissingBinariesError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api:
        yield api


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: client.ApiClient) -> Iterator[str]:
    """A namespace named after the test plus a random suffix, deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


def _wait_for(predicate: Callable[[], T], timeout: float = 30, what: str = "condition") -> T:
    """Polls `predicate` every 0.2 s until it returns something truthy, and returns that."""
    return poll(predicate, what, timeout=timeout, interval=0.2)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., object]:
    return _wait_for


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small ad-click versions 1 and 2 (MLSD_TEST_MODELS reuses a built repository)."""
    from tests.integration.rollout_harness import build_models

    return build_models(Path(os.environ.get("MLSD_TEST_MODELS") or tmp_path_factory.mktemp("rollout-models")))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator["PrometheusServer"]:
    """A real Prometheus scraping, every second, the targets a test writes with `scrape`."""
    from tests.integration.rollout_harness import PrometheusServer

    server = PrometheusServer(tmp_path_factory.mktemp("prometheus")).start()
    yield server
    server.stop()
