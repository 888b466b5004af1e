"""kopf handlers: thin wrappers that sequence a reconcile and sort its failures.

Importing this module registers the handlers, so `kopf run -m mlsd_operator.controller` works."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from mlsd_contract.api import GROUP, PLURAL, VERSION
from mlsd_operator.builders import BATCH_RUN_ANNOTATION, LABEL_DEPLOYMENT
from mlsd_operator.rollout import Prometheus, PrometheusError

from . import _status as st
from ._kube import FIELD_MANAGER, Kube
from ._metrics import LEADER, RECONCILE_SECONDS, RECONCILES, STATE, serve_metrics
from ._reconcile import PermanentFailure, WaitingForDependency, record_failure, reconcile
from ._progress import tick
from . import _drift as drift
from ._batch import start_requested_run
from ._settings import OperatorSettings

MANAGED = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
RESYNC_SECONDS = float(os.environ.get("MLSD_RESYNC_SECONDS", "300"))
ROLLOUT_TICK_SECONDS = float(os.environ.get("MLSD_ROLLOUT_TICK_SECONDS", "10"))
DRIFT_TICK_SECONDS = float(os.environ.get("MLSD_DRIFT_TICK_SECONDS", "30"))   # spec.drift.interval paces checks
# The API server restarting, etcd away, a connection reset: retried soon. Any exception kopf sees
# unsorted waits kopf's default back-off, 60 s, which stalled a rollout's ticks that long after a blip.
TRANSIENT_RETRY_SECONDS = 5.0
TRANSIENT_STATUSES = frozenset({0, 429, 500, 502, 503, 504})


def _transient(error: BaseException) -> bool:
    if isinstance(error, ApiException):
        return error.status in TRANSIENT_STATUSES
    return isinstance(error, (urllib3.exceptions.HTTPError, OSError))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    # Progress and the last-handled spec live in annotations, leaving status to the operator's own fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    # Handlers are sync (the kubernetes client blocks): reconciles of different objects run in this
    # many threads at once. Each waits on the API server most of the time, so more threads than cores.
    settings.execution.max_workers = int(os.environ.get("MLSD_WORKERS", "16"))
    memo.settings = OperatorSettings.from_env()
    memo.kube = Kube(missing_api_ttl=memo.settings.dependency_retry_seconds)
    memo.prometheus = Prometheus(memo.settings.prometheus_url)
    if serve_metrics(memo.settings.metrics_port):
        logger.info("metrics on :%d/metrics", memo.settings.metrics_port)
    LEADER.set(1)


_LOCKS: dict[tuple[str, str], threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _serialized(memo: kopf.Memo, body: kopf.Body | dict[str, Any]) -> Iterator[dict[str, Any] | None]:
    """One writer per ModelDeployment at a time, working from the object as it is now.

    kopf runs an object's event handlers, its resync, rollout and drift timers and its children's
    events concurrently, in its thread pool. Unserialized, their reads and writes interleaved:
    - two reconciles wrote the route within a millisecond, one working from the status as it was
      before the rollout tick moved the split;
    - a reconcile that read the conditions before the drift check wrote Drifted=True wrote them
      back without it.
    Holding the object's lock from the read to the last write makes each read-then-write whole.
    None: the object is gone or being deleted."""
    meta = body.get("metadata") or {}
    key = (meta.get("namespace") or "", meta.get("name") or "")
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.RLock())
    with lock:
        fresh = memo.kube.get_model_deployment(*key)
        yield None if fresh is None or (fresh.get("metadata") or {}).get("deletionTimestamp") else fresh


def _run(trigger: str, body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, *, apply: bool = True) -> None:
    started = time.perf_counter()
    obj = dict(body)      # until the fresh read: what a failure before it is recorded against
    try:
        with _serialized(memo, body) as fresh:
            if fresh is None:
                return
            obj = fresh
            previous_phase = (obj.get("status") or {}).get("phase")
            outcome = reconcile(memo.kube, obj, memo.settings, apply=apply)
    except PermanentFailure as failure:
        RECONCILES.labels(trigger, "failed").inc()
        if record_failure(memo.kube, obj, failure.reason, str(failure)):
            kopf.warn(obj, reason=failure.reason, message=str(failure))
        raise kopf.PermanentError(str(failure)) from None
    except WaitingForDependency as waiting:
        RECONCILES.labels(trigger, "waiting").inc()
        if record_failure(memo.kube, obj, st.Reason.DEPENDENCY_MISSING, str(waiting)):
            kopf.warn(obj, reason=st.Reason.DEPENDENCY_MISSING, message=str(waiting))
        raise kopf.TemporaryError(str(waiting), delay=memo.settings.dependency_retry_seconds) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        RECONCILES.labels(trigger, "error").inc()
        raise kopf.TemporaryError(f"API server unreachable, retrying: {error}", delay=TRANSIENT_RETRY_SECONDS) from None
    except ApiException as error:
        RECONCILES.labels(trigger, "error").inc()
        if _transient(error):        # not the object's fault: no Degraded status (it could not be written anyway)
            raise kopf.TemporaryError(f"API server unavailable ({error.status} {error.reason}), retrying",
                                      delay=TRANSIENT_RETRY_SECONDS) from None
        if error.status == 409:
            raise kopf.TemporaryError(f"conflict, retrying: {error.reason}", delay=1) from None
        # The API server refused a child (quota, admission, exhausted IP range...): say so in status.
        message = f"the API server refused a write ({error.status} {error.reason}): {_api_message(error)}"
        try:
            if "spec" in obj and record_failure(memo.kube, obj, st.Reason.APPLY_FAILED, message):
                kopf.warn(obj, reason=st.Reason.APPLY_FAILED, message=message)
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            pass    # the status write is refused too (a restarting API server's 403s): the retry below still runs
        raise kopf.TemporaryError(message, delay=10) from None
    finally:
        RECONCILE_SECONDS.labels(trigger).observe(time.perf_counter() - started)
    RECONCILES.labels(trigger, "ok").inc()
    for action, key in outcome.changes:
        kopf.info(obj, reason=action.capitalize(), message=f"{action} {key.kind} {key.name}")
    phase = outcome.status.get("phase")
    if phase != previous_phase:
        kopf.info(obj, reason="PhaseChanged", message=f"{previous_phase or 'None'} -> {phase}")
    logger.debug("reconciled: %d change(s), status written: %s", len(outcome.changes), outcome.status_written)


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body).get("message", ""))[:1000]
    except (TypeError, ValueError):
        return str(error.body)[:1000]


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_model_deployment(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, reason: str, **_: Any) -> None:
    _run(str(reason), body, memo, logger)


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_model_deployment_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Every change, status included, for the state series (`_state_metrics`); nothing is written."""
    STATE.observe(event.get("type"), body)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, idle=RESYNC_SECONDS)
def resync(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """Repairs drift: a child edited or deleted by hand is put back."""
    try:
        _run("resync", body, memo, logger)
    except kopf.PermanentError:
        pass
    batch_run(body, memo, logger)


def _owner_changed(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger) -> None:
    name = (body.get("metadata", {}).get("labels") or {}).get(LABEL_DEPLOYMENT)
    namespace = body.get("metadata", {}).get("namespace")
    if not name or not hasattr(memo, "kube"):
        return
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment",
             "metadata": {"namespace": namespace, "name": name}}     # _run reads it, under its lock
    try:
        _run("child", kopf.Body(owner), memo, logger, apply=False)
    except (kopf.PermanentError, kopf.TemporaryError):
        pass     # the owner's own handler reports and retries these


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def on_deployment_event(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    _owner_changed(body, memo, logger)


@kopf.on.event("serving.kserve.io", "v1beta1", "inferenceservices", labels=MANAGED)
def on_inference_service_event(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    _owner_changed(body, memo, logger)


def _has_rollout(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("canary") or spec.get("shadow"))


@contextlib.contextmanager
def _periodic(body: kopf.Body, memo: kopf.Memo, *, unavailable: str, delay: float) -> Iterator[None]:
    """What a timer that reads Prometheus and writes status does with a failure: one warning Event a
    minute per object (not one per tick) while Prometheus is away; a 409 (the object moved on since it
    was read) is left to the next tick; any other refusal or a lost connection retries at the next tick,
    not after kopf's 60 s back-off (a restarted API server answers 403 until its RBAC cache is warm)."""
    try:
        yield
    except PrometheusError as error:
        uid = body.get("metadata", {}).get("uid")
        warned = memo.setdefault(f"warned_{unavailable}", {})
        if time.monotonic() - warned.get(uid, 0.0) > 60:
            kopf.warn(body, reason=unavailable, message=str(error))
            warned[uid] = time.monotonic()
        raise kopf.TemporaryError(str(error), delay=delay) from None
    except ApiException as error:
        if error.status == 409:
            return
        raise kopf.TemporaryError(f"API server refused the tick ({error.status} {error.reason}), next tick retries",
                                  delay=delay) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise kopf.TemporaryError(f"API server unreachable ({error}), next tick retries", delay=delay) from None


def _post(body: kopf.Body, events: list[tuple[str, str, str]]) -> None:
    for event_type, reason, message in events:
        kopf.event(body, type=event_type, reason=reason, message=message)


@kopf.timer(GROUP, VERSION, PLURAL, interval=ROLLOUT_TICK_SECONDS, when=_has_rollout)
def rollout(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """Progressive delivery: analyse, then advance, promote, roll back, pause or abort."""
    with _periodic(body, memo, unavailable="AnalysisUnavailable", delay=ROLLOUT_TICK_SECONDS), \
            _serialized(memo, body) as fresh:
        if fresh is None:
            return
        result = tick(memo.kube, fresh, memo.settings, memo.prometheus)
        _post(body, result.events)
        if result.step is not None:
            logger.debug("rollout tick: %s (%s)", result.step.action.value, result.step.reason)


def _has_drift(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("drift"))


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_TICK_SECONDS, when=_has_drift)
def drift_check(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """Drift monitoring: once per spec.drift.interval, PSI per feature vs the card's references; Drifted
    condition, Events, and at most one retraining per cooldown."""
    with _periodic(body, memo, unavailable="DriftCheckUnavailable", delay=DRIFT_TICK_SECONDS), \
            _serialized(memo, body) as fresh:
        if fresh is None:
            return
        result = drift.check(memo.kube, fresh, memo.settings, memo.prometheus)
        _post(body, result.events)
        if result.checked:
            logger.debug("drift checked: %s", (result.events or "no change"))


# Watch events, not an on.update(field=...) handler: kopf leaves annotations under its own storage
# prefix (mlsd.io/) out of the diffs it hands to handlers, so it would never see this one change.
@kopf.on.event(GROUP, VERSION, PLURAL, annotations={BATCH_RUN_ANNOTATION: kopf.PRESENT})
def batch_run(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, type: str | None = None, **_: Any) -> None:
    """On-demand batch prediction: a new mlsd.io/batch-run value starts one Job. Every event of the
    object checks it (cheap: a comparison with status.batch); a refused write waits for the next event
    or the resync timer, which checks too."""
    if type == "DELETED" or not hasattr(memo, "kube") or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    try:
        outcome = start_requested_run(memo.kube, dict(body), memo.settings)
    except PermanentFailure as failure:
        kopf.warn(body, reason=failure.reason, message=str(failure))
        return
    except ApiException as error:
        if error.status == 409 or _transient(error):
            logger.info("batch run not started yet (%s %s); the next event retries", error.status, error.reason)
            return
        raise
    if outcome is not None:
        reason, message = outcome
        (kopf.warn if reason == "BatchRunRefused" else kopf.info)(body, reason=reason, message=message)
