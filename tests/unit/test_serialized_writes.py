"""One writer per ModelDeployment (controller/_handlers._serialized): kopf runs an object's
handlers, timers and child events concurrently in its thread pool, so reconciles of one object
must not interleave, and each must work from the object as it is when its turn comes.

`reconcile` is replaced by a recorder and the API server by an in-memory object store: what is
checked is the operator's own scheduling, which a real API server cannot show deterministically
(integration: tests/integration/test_faults.py)."""

from __future__ import annotations

import logging
import threading
import time

import kopf

from mlsd_operator.controller import _handlers as handlers


class _Store:
    def __init__(self):
        self.objects = {("ns", "a"): {"metadata": {"namespace": "ns", "name": "a"}, "status": {"step": 0}},
                        ("ns", "b"): {"metadata": {"namespace": "ns", "name": "b"}, "status": {"step": 0}}}

    def get_model_deployment(self, namespace: str, name: str):
        return self.objects.get((namespace, name))


def _recorder(spans: list, seen: list):
    """A reconcile that takes 0.2 s and moves the stored object on (as the rollout tick's write would)."""
    from mlsd_operator.controller._reconcile import ReconcileResult

    def reconcile(kube, body, settings, *, apply=True):
        start = time.monotonic()
        name = body["metadata"]["name"]
        seen.append((name, body["status"]["step"]))
        kube.objects[("ns", name)] = {**body, "status": {"step": body["status"]["step"] + 1}}
        time.sleep(0.2)
        spans.append((name, start, time.monotonic()))
        return ReconcileResult([], {}, False)
    return reconcile


def test_reconciles_of_one_object_take_turns_and_read_it_fresh(monkeypatch) -> None:
    spans: list = []
    seen: list = []
    monkeypatch.setattr(handlers, "reconcile", _recorder(spans, seen))
    monkeypatch.setattr(handlers.kopf, "info", lambda *a, **k: None)
    memo = kopf.Memo(kube=_Store(), settings=None)
    stale = {"metadata": {"namespace": "ns", "name": "a"}, "status": {"step": 0}}
    other = {"metadata": {"namespace": "ns", "name": "b"}, "status": {"step": 0}}
    threads = [threading.Thread(target=handlers._run, args=("test", kopf.Body(body), memo, logging.getLogger("t")))
               for body in (stale, stale, stale, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    mine = sorted((start, end) for name, start, end in spans if name == "a")
    assert len(mine) == 3
    assert all(later_start >= end for (_, end), (later_start, _) in zip(mine, mine[1:])), mine
    assert [step for name, step in seen if name == "a"] == [0, 1, 2], seen   # each saw the previous one's write
    theirs = next((start, end) for name, start, end in spans if name == "b")
    assert any(start < theirs[1] and theirs[0] < end for start, end in mine), "another object waited for this one"


def test_a_deleted_object_is_not_reconciled(monkeypatch) -> None:
    called = []
    monkeypatch.setattr(handlers, "reconcile", lambda *a, **k: called.append(a))
    memo = kopf.Memo(kube=_Store(), settings=None)
    gone = {"metadata": {"namespace": "ns", "name": "gone"}}
    handlers._run("test", kopf.Body(gone), memo, logging.getLogger("t"))
    assert called == []
