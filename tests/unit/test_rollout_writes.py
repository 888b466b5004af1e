"""How a rollout tick writes the step it decided: re-checking the canary right before the write,
and surviving conflicting writers without moving a counter twice.

The cluster is an in-memory stand-in (FakeKube below): these are the API server's answers to the
few calls the write makes (GET the canary Deployment, GET and PATCH the ModelDeployment), including
the 409 a stale resourceVersion gets. The real API server runs the same cases in
tests/integration/test_faults.py (concurrent writer, etcd outage, canary losing its pods)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from mlsd_operator.controller._progress import _write_step
from mlsd_operator.controller._reconcile import parse
from mlsd_operator.rollout import CONTROL_ANNOTATION, Action, Step
from tests.conftest import canary, manifest


class FakeKube:
    def __init__(self, body: dict[str, Any], canary_available: bool = True) -> None:
        self.body = copy.deepcopy(body)
        self.body["metadata"].update(uid="u1", generation=1, resourceVersion="1")
        self.canary_available = canary_available
        self.writes: list[dict[str, Any]] = []
        self.on_patch: list[Any] = []      # callables run before a patch lands (another writer)

    def bump(self, mutate=lambda body: None) -> None:
        mutate(self.body)
        self.body["metadata"]["resourceVersion"] = str(int(self.body["metadata"]["resourceVersion"]) + 1)

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def get(self, api: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        status = "True" if self.canary_available else "False"
        return {"status": {"readyReplicas": int(self.canary_available),
                           "conditions": [{"type": "Available", "status": status}]}}

    def pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return []

    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.snapshot()

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None = None):
        if self.on_patch:
            self.on_patch.pop(0)(self)
        if resource_version and resource_version != self.body["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.writes.append(patch)
        self.bump(lambda body: body.setdefault("status", {}).update(patch))


def started(kube_available: bool = True) -> FakeKube:
    body = manifest(runtime="triton", canary=canary(steps=[10, 50]))
    body["status"] = {"canary": {"version": "2", "step": 0, "trafficPercent": 10}}
    return FakeKube(body, kube_available)


ADVANCE = Step(Action.ADVANCE, "analysis passed", {"step": 1, "trafficPercent": 50})
PATCH = {"canary": {"version": "2", "step": 1, "trafficPercent": 50}}


def write(kube: FakeKube, step: Step = ADVANCE, body: dict[str, Any] | None = None) -> str | None:
    body = body or kube.snapshot()
    return _write_step(kube, parse(body), body, step, PATCH)


def test_a_raise_is_written_while_the_canary_is_available():
    kube = started()
    assert write(kube) is None
    assert kube.body["status"]["canary"]["step"] == 1


@pytest.mark.parametrize("action", [Action.ADVANCE, Action.PROMOTE])
def test_a_raise_is_dropped_when_the_canary_lost_its_pods_since_the_decision(action):
    """The decision was taken on an available canary; by the write (after seconds of analysis)
    its pods are gone: no traffic goes up."""
    kube = started()
    body = kube.snapshot()
    kube.canary_available = False
    assert write(kube, Step(action, "passed", {"step": 1}), body) == "canary has no available replica"
    assert kube.writes == []


def test_a_rollback_is_written_whatever_the_canary_state():
    kube = started(kube_available=False)
    assert write(kube, Step(Action.ROLLBACK, "failed", {"trafficPercent": 0})) is None
    assert len(kube.writes) == 1


def test_a_conflict_from_an_unrelated_change_writes_the_same_step_once():
    """Another tool bumped a label between the read and the write: the step still lands, once."""
    kube = started()
    body = kube.snapshot()
    kube.bump(lambda b: b["metadata"].setdefault("labels", {}).update(team="ads"))
    assert write(kube, body=body) is None
    assert len(kube.writes) == 1 and kube.body["status"]["canary"]["step"] == 1


def test_a_writer_that_never_stops_cannot_starve_the_step_forever_nor_double_it():
    kube = started()
    body = kube.snapshot()
    touch = lambda k: k.bump(lambda b: b["metadata"].setdefault("labels", {}).update(n=k.body["metadata"]["resourceVersion"]))
    kube.on_patch = [touch] * 10
    assert "conflicting writers" in write(kube, body=body)
    assert kube.writes == []


@pytest.mark.parametrize("change", [
    lambda b: b["status"]["canary"].update(step=1),                              # another tick moved it
    lambda b: b["metadata"].update(generation=2),                                # the spec was edited
    lambda b: b["metadata"].setdefault("annotations", {}).update({CONTROL_ANNOTATION: "abort"}),
    lambda b: b["metadata"].update(deletionTimestamp="2026-12-07T00:00:00Z"),
])
def test_a_conflict_from_a_change_the_decision_read_drops_the_step(change):
    kube = started()
    body = kube.snapshot()
    kube.bump(change)
    assert "changed since this step was decided" in write(kube, body=body)
    assert kube.writes == []


def test_the_availability_check_runs_again_after_a_conflict():
    kube = started()
    body = kube.snapshot()

    def lose_pods_and_touch(k: FakeKube) -> None:
        k.canary_available = False
        k.bump(lambda b: b["metadata"].setdefault("labels", {}).update(x="y"))

    kube.on_patch = [lose_pods_and_touch]
    assert write(kube, body=body) == "canary has no available replica"
    assert kube.writes == []


def test_other_api_errors_propagate():
    kube = started()

    def refuse(k: FakeKube) -> None:
        raise ApiException(status=403, reason="Forbidden")

    kube.on_patch = [refuse]
    with pytest.raises(ApiException) as raised:
        write(kube)
    assert raised.value.status == 403
