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

from mlsd_operator.api import ModelDeployment, parse_duration
from mlsd_operator.builders import TrafficState
from mlsd_operator.rollout import (
    CONTROL_ANNOTATION, Action, Control, Prometheus, Step, TrackSelector, analysis_due, analyze, decide, drift,
    format_time, parse_control, parse_time,
)

from ._kube import Kube
from ._metrics import ROLLOUT_DECISIONS
from ._reconcile import _observe, parse, reconcile
from ._settings import OperatorSettings

HISTORY_LIMIT = 50
OUTCOMES = {Action.PROMOTE: "Promoted", Action.ROLLBACK: "RolledBack", Action.ABORT: "Aborted"}


@dataclass(frozen=True)
class TickResult:
    step: Step | None
    events: list[tuple[str, str, str]]        # (type, reason, message)


def _selector(mdep: ModelDeployment, version: str) -> TrackSelector:
    return TrackSelector(mdep.metadata.namespace, mdep.metadata.name, version)


def _finish_promotion(kube: Kube, mdep: ModelDeployment) -> None:
    canary = mdep.spec.canary
    kube.patch_model_deployment(mdep.metadata.namespace, mdep.metadata.name,
                                {"spec": {"model": canary.model.to_wire(), "canary": None}})


def _promoted(mdep: ModelDeployment, status: dict[str, Any]) -> bool:
    version = mdep.spec.canary.model.version
    return any(h.get("version") == version and h.get("outcome") == "Promoted" for h in status.get("history") or [])


def _canary_available(kube: Kube, mdep: ModelDeployment) -> bool:
    track = _observe(kube, mdep, TrafficState.from_status(mdep)).tracks.get(mdep.spec.canary.model.version)
    return bool(track and track.available)


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
    if _promoted(mdep, status):
        _finish_promotion(kube, mdep)
        return TickResult(None, events)
    current = status.get("canary") or {}
    if current.get("version") != canary.model.version or TrafficState.from_status(mdep).canary_percent is None:
        return TickResult(None, events)            # not started yet, or already rolled back
    annotations = mdep.metadata.annotations or {}
    control = parse_control(annotations.get(CONTROL_ANNOTATION))
    if control not in (Control.ABORT, Control.PAUSED) and not _canary_available(kube, mdep):
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
        entry = {"version": canary.model.version, "outcome": OUTCOMES[step.action], "at": format_time(now),
                 "reason": step.reason[:1000]}
        patch["history"] = ((status.get("history") or []) + [entry])[-HISTORY_LIMIT:]
    kube.patch_status(mdep.metadata.namespace, mdep.metadata.name, patch,
                      resource_version=body["metadata"].get("resourceVersion"))
    ROLLOUT_DECISIONS.labels(step.action.value).inc()
    warning = step.action in (Action.ROLLBACK, Action.ABORT, Action.RETRY)
    events.append(("Warning" if warning else "Normal", f"Canary{step.action.value}", step.reason))

    if control in (Control.PROMOTE, Control.ABORT):
        kube.patch_model_deployment(mdep.metadata.namespace, mdep.metadata.name,
                                    {"metadata": {"annotations": {CONTROL_ANNOTATION: None}}})
    if step.action == Action.PROMOTE:
        _finish_promotion(kube, mdep)              # the spec change re-renders: canary becomes stable
    elif step.action in (Action.ADVANCE, Action.ROLLBACK, Action.ABORT, Action.PAUSE, Action.RESUME):
        fresh = kube.get_model_deployment(mdep.metadata.namespace, mdep.metadata.name)
        if fresh is not None:     # new traffic for the children, or just new conditions (pause/resume)
            reconcile(kube, fresh, settings, apply=step.action not in (Action.PAUSE, Action.RESUME))
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
