"""One rollout tick: read the canary's state, analyse live metrics when a step's interval is
over, and act on the state machine's decision (advance, promote, roll back, pause, abort).

Order of writes, so a crash at any point resumes correctly:
- status first, with a resourceVersion precondition (counters never move twice);
- a promotion is recorded in history before the spec is rewritten; a tick that finds a recorded
  promotion whose spec rewrite is missing finishes it;
- then the children are re-applied with the new traffic split."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from mlsd_contract.api import HistoryEntry, ModelDeployment, Outcome, parse_duration
from mlsd_contract.tracks import TrafficState, promoted
from mlsd_operator.rollout import (
    CONTROL_ANNOTATION, Action, Control, Prometheus, Step, TrackSelector, analysis_due, analyze, decide, drift,
    format_time, parse_control, parse_time,
)

from ._kube import Kube
from ._metrics import ROLLOUT_DECISIONS
from ._reconcile import canary_available, parse, reconcile
from ._settings import OperatorSettings

HISTORY_LIMIT = 50
OUTCOMES = {Action.PROMOTE: Outcome.PROMOTED, Action.ROLLBACK: Outcome.ROLLED_BACK, Action.ABORT: Outcome.ABORTED}
RAISES_CANARY = frozenset({Action.ADVANCE, Action.PROMOTE})
"""Steps that give the canary more traffic (all of it, on promotion)."""
CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True)
class TickResult:
    step: Step | None
    events: list[tuple[str, str, str]]        # (type, reason, message)


def _selector(mdep: ModelDeployment, version: str) -> TrackSelector:
    return TrackSelector(mdep.metadata.namespace, mdep.metadata.name, version, mdep.spec.case_study.value)


def _finish_promotion(kube: Kube, mdep: ModelDeployment) -> None:
    canary = mdep.spec.canary
    kube.patch_model_deployment(mdep.metadata.namespace, mdep.metadata.name,
                                {"spec": {"model": canary.model.to_wire(), "canary": None}})


def _decided_on(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a step is decided from: if any of it changed, the decision is stale."""
    metadata, status = body.get("metadata") or {}, body.get("status") or {}
    annotations = metadata.get("annotations") or {}
    return (metadata.get("uid"), metadata.get("generation"), metadata.get("deletionTimestamp"),
            annotations.get(CONTROL_ANNOTATION), status.get("canary"), status.get("history"))


def _write_step(kube: Kube, mdep: ModelDeployment, body: dict[str, Any], step: Step,
                patch: dict[str, Any]) -> str | None:
    """Writes the step into status; returns why it was dropped instead, or None once written.

    A step that raises the canary's traffic is written only while the canary has an available
    replica, checked right before each attempt: the decision may have taken seconds of analysis,
    long enough for its pods to go (after a control-plane outage the node lifecycle controller marks
    them NotReady moments after it is back). The write carries the resourceVersion the step was
    decided from, so counters never move twice; on a 409 the object is re-read, and the same step is
    written again only if nothing it was decided from changed: a writer elsewhere that keeps touching
    the object (labels, annotations of other tools) must not starve the rollout."""
    namespace, name = mdep.metadata.namespace, mdep.metadata.name
    for attempt in range(CONFLICT_ATTEMPTS):
        if step.action in RAISES_CANARY and not canary_available(kube, mdep):
            return "canary has no available replica"
        if attempt:     # re-read last, so that the resourceVersion is as fresh as it can be at the write
            fresh = kube.get_model_deployment(namespace, name)
            if fresh is None or _decided_on(fresh) != _decided_on(body):
                return "the object changed since this step was decided; the next tick decides again"
            body = fresh
        try:
            kube.patch_status(namespace, name, patch, resource_version=body["metadata"].get("resourceVersion"))
            return None
        except ApiException as error:
            if error.status != 409:
                raise
    return f"status write refused {CONFLICT_ATTEMPTS} times by conflicting writers; the next tick retries"


def tick(kube: Kube, body: dict[str, Any], settings: OperatorSettings, prometheus: Prometheus,
         now: dt.datetime | None = None) -> TickResult:
    now = now or dt.datetime.now(dt.timezone.utc)
    mdep = parse(body)
    status = dict(body.get("status") or {})
    events: list[tuple[str, str, str]] = []
    events += _measure_shadow(kube, mdep, body, status, settings, prometheus, now)
    canary = mdep.spec.canary
    if canary is None:
        return TickResult(None, events)
    if promoted(canary.model.version, status.get("history") or []):
        _finish_promotion(kube, mdep)
        return TickResult(None, events)
    current = status.get("canary") or {}
    if current.get("version") != canary.model.version or TrafficState.from_status(mdep).canary_percent is None:
        return TickResult(None, events)            # not started yet, or already rolled back
    annotations = mdep.metadata.annotations or {}
    control = parse_control(annotations.get(CONTROL_ANNOTATION))
    if control not in (Control.ABORT, Control.PAUSED) and not canary_available(kube, mdep):
        # Its pods went away after it started (node loss, eviction, a control-plane outage): more
        # traffic, or all of it on promotion, must not go to a track that cannot serve it.
        return TickResult(Step(Action.HOLD, "canary has no available replica"), events)
    verdict = None
    if control is None and analysis_due(canary, current, now):
        seconds = parse_duration(canary.interval)
        verdict = analyze(canary.analysis, prometheus.track(_selector(mdep, mdep.spec.model.version), seconds),
                          prometheus.track(_selector(mdep, canary.model.version), seconds))
    step = decide(canary, current, now, control, verdict)
    if step.action == Action.HOLD:
        return TickResult(step, events)

    patch: dict[str, Any] = {"canary": {**current, **step.canary}}
    if step.ends_rollout:
        entry = HistoryEntry(version=canary.model.version, outcome=OUTCOMES[step.action], at=format_time(now),
                             reason=step.reason[:1000]).to_wire()
        patch["history"] = ((status.get("history") or []) + [entry])[-HISTORY_LIMIT:]
    dropped = _write_step(kube, mdep, body, step, patch)
    if dropped is not None:
        return TickResult(Step(Action.HOLD, dropped), events)
    ROLLOUT_DECISIONS.labels(step.action.value).inc()
    warning = step.action in (Action.ROLLBACK, Action.ABORT, Action.RETRY, Action.STALL)
    events.append(("Warning" if warning else "Normal", f"Canary{step.action.value}", step.reason))

    if control in (Control.PROMOTE, Control.ABORT):
        kube.patch_model_deployment(mdep.metadata.namespace, mdep.metadata.name,
                                    {"metadata": {"annotations": {CONTROL_ANNOTATION: None}}})
    if step.action == Action.PROMOTE:
        _finish_promotion(kube, mdep)              # the spec change re-renders: canary becomes stable
    elif step.action in (Action.ADVANCE, Action.ROLLBACK, Action.ABORT, Action.PAUSE, Action.RESUME, Action.STALL):
        fresh = kube.get_model_deployment(mdep.metadata.namespace, mdep.metadata.name)
        if fresh is not None:     # new traffic for the children, or just new conditions (pause/resume/stall)
            reconcile(kube, fresh, settings, apply=step.action not in (Action.PAUSE, Action.RESUME, Action.STALL))
    return TickResult(step, events)


def _measure_shadow(kube: Kube, mdep: ModelDeployment, body: dict[str, Any], status: dict[str, Any],
                    settings: OperatorSettings, prometheus: Prometheus, now: dt.datetime) -> list[tuple[str, str, str]]:
    """Shadow agreement: PSI of the shadow's score histogram against stable's over a window."""
    shadow = mdep.spec.shadow
    if shadow is None:
        return []
    current = status.get("shadow") or {}
    last = parse_time(current.get("at"))
    if last is not None and (now - last).total_seconds() < settings.shadow_window_seconds:
        return []
    seconds = settings.shadow_window_seconds
    stable = prometheus.track(_selector(mdep, mdep.spec.model.version), seconds)
    mirrored = prometheus.track(_selector(mdep, shadow.model.version), seconds)
    value = drift(stable, mirrored)
    patch = {"shadow": {**current, "version": shadow.model.version, "at": format_time(now),
                        "requests": round(mirrored.requests, 3),
                        "predictionDrift": None if value is None else round(value, 6)}}
    kube.patch_status(mdep.metadata.namespace, mdep.metadata.name, patch)
    return []
