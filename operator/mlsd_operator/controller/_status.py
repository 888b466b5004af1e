"""Status from what the cluster shows: pure functions, unit-tested without a cluster.

Conditions follow the Kubernetes convention: typed, with reasons, `observedGeneration`, and a
`lastTransitionTime` that moves only when the condition's status flips."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from mlsd_contract.api import CanaryStatus, ModelDeployment, Outcome, Phase, Runtime, ShadowStatus, TrackStatus
from mlsd_contract.tracks import TrafficState, ending_entry
from mlsd_operator.builders import LABEL_DEPLOYMENT, LABEL_VERSION
from mlsd_operator.rollout import format_time

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"


class Reason:
    """Reason constants: CamelCase, stable, documented in docs/operator.md."""

    AVAILABLE = "Available"
    ROLLING_OUT = "RollingOut"
    WAITING_FOR_PODS = "WaitingForPods"
    WAITING_FOR_KSERVE = "WaitingForKServe"
    CANARY_DEPLOYING = "CanaryDeploying"
    CANARY_ACTIVE = "CanaryActive"
    CANARY_PAUSED = "CanaryPaused"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    STABLE = "Stable"
    INVALID_SPEC = "InvalidSpec"
    DEPENDENCY_MISSING = "DependencyMissing"
    OWNERSHIP_CONFLICT = "OwnershipConflict"
    DEPLOYMENT_FAILED = "DeploymentFailed"
    MODEL_REFUSED = "ModelRefused"
    APPLY_FAILED = "ApplyFailed"
    AS_EXPECTED = "AsExpected"


DRIFTED = "Drifted"      # written by the drift check (_drift.py), kept here while spec.drift is set


def _kept_conditions(mdep: ModelDeployment) -> tuple[str, ...]:
    return (READY, PROGRESSING, DEGRADED, DRIFTED) if mdep.spec.drift is not None else (READY, PROGRESSING, DEGRADED)


def now() -> str:
    """The timestamp format of every time in status (one formatter: rollout.format_time)."""
    return format_time(dt.datetime.now(dt.timezone.utc))


@dataclass(frozen=True)
class TrackObservation:
    version: str
    exists: bool = False
    ready_replicas: int = 0
    available: bool = False
    failure: str | None = None        # why it cannot progress (ProgressDeadlineExceeded, ...)
    message: str | None = None
    refused: bool = False             # its predictor refused the model (gate, self-check, bad repository)


@dataclass(frozen=True)
class Observation:
    """What the operator saw of its children in one pass."""

    tracks: dict[str, TrackObservation] = field(default_factory=dict)   # by version
    url: str | None = None


def observe_deployment(version: str, deployment: dict[str, Any] | None) -> TrackObservation:
    if deployment is None:
        return TrackObservation(version)
    status = deployment.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    available = conditions.get("Available", {}).get("status") == "True"
    progressing = conditions.get("Progressing", {})
    failure = None
    if progressing.get("status") == "False":
        failure = f"{progressing.get('reason')}: {progressing.get('message')}"
    elif conditions.get("ReplicaFailure", {}).get("status") == "True":
        failure = conditions["ReplicaFailure"].get("message")
    return TrackObservation(version, True, int(status.get("readyReplicas") or 0), available, failure)


REFUSAL_MARKERS = ("mlsd predictor: refusing to serve", "mlsd pull:")
"""How the predictor and the model puller begin the last line they write before exiting on a model
they will not serve (not servable, failed self-check, bad repository). Containers render
terminationMessagePolicy FallbackToLogsOnError, so that line is the container's termination message."""


def refusal(pods: list[dict[str, Any]]) -> str | None:
    """The refusal a track's pods exited with, if any: 'container: last line' of the first one found."""
    for pod in pods:
        status = pod.get("status") or {}
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            for state in (container.get("state") or {}, container.get("lastState") or {}):
                terminated = state.get("terminated") or {}
                if not terminated.get("exitCode"):
                    continue
                for line in reversed((terminated.get("message") or "").strip().splitlines()):
                    if line.strip().startswith(REFUSAL_MARKERS):
                        return f"{container.get('name')}: {line.strip()}"[:2000]
    return None


def with_refusal(track: TrackObservation, pods: list[dict[str, Any]]) -> TrackObservation:
    """A track that is not available because its model was refused says so (a Degraded condition)."""
    reason = None if track.available else refusal(pods)
    if reason is None:
        return track
    return TrackObservation(track.version, track.exists, track.ready_replicas, track.available,
                            f"model refused: {reason}", track.message, refused=True)


def observe_inference_service(versions: list[str], isvc: dict[str, Any] | None, *,
                              canary_names: dict[str, str] | None = None,
                              deployments: dict[str, dict[str, Any] | None] | None = None) -> dict[str, TrackObservation]:
    """KServe reports one object: its Ready condition covers the stable predictor, and in Standard
    mode each `spec.canary[]` entry has a `canaryStatuses` entry of the same name (`canary_names`:
    version -> that name; a canary is ready only by its own entry). Replica counts come from the
    Deployments KServe made for each track (`deployments`: version -> Deployment), where known;
    Serverless (Knative revisions, no such Deployments, no canaryStatuses) falls back to the
    conditions alone."""
    if isvc is None:
        return {v: TrackObservation(v) for v in versions}
    status = isvc.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    deployments = deployments or {}

    def replicas(version: str, ready: bool) -> int:
        deployment = deployments.get(version)
        if deployment is None:
            return 1 if ready else 0
        return int((deployment.get("status") or {}).get("readyReplicas") or 0)

    ready = conditions.get("Ready", {})
    is_ready = ready.get("status") == "True"
    message = ready.get("message") or ("no status from KServe yet: is the KServe controller running?"
                                       if not status else None)
    stable = versions[0]
    out = {stable: TrackObservation(stable, True, replicas(stable, is_ready), is_ready, None, message)}
    canaries = {c.get("name"): c for c in status.get("canaryStatuses") or []}
    for version in versions[1:]:
        name = (canary_names or {}).get(version)
        if name is not None:                              # Standard: its own entry, by name
            canary_ready = bool(canaries.get(name, {}).get("ready"))
        else:                                             # Serverless: the latest revision
            canary_ready = (conditions.get("PredictorReady", {}).get("status") == "True"
                            and bool(status.get("components")))
        out[version] = TrackObservation(version, True, replicas(version, canary_ready), canary_ready)
    return out


def set_condition(conditions: list[dict[str, Any]], type_: str, status: bool, reason: str, message: str,
                  generation: int | None) -> list[dict[str, Any]]:
    """Upsert one condition; keeps lastTransitionTime unless the status flips."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != value
    entry = {
        "type": type_, "status": value, "reason": reason, "message": message[:4000],
        "observedGeneration": generation,
        "lastTransitionTime": now() if changed else old.get("lastTransitionTime", now()),
    }
    return [c for c in conditions if c.get("type") != type_] + [entry]


def default_url(mdep: ModelDeployment, domain: str = "cluster.local") -> str:
    return f"http://{mdep.metadata.name}.{mdep.metadata.namespace}.svc.{domain}"


def desired_status(mdep: ModelDeployment, observed: Observation, traffic: TrafficState,
                   current: dict[str, Any] | None) -> dict[str, Any]:
    """The status the operator wants written, given the children it observed."""
    current = dict(current or {})
    spec = mdep.spec
    generation = mdep.metadata.generation
    stable = observed.tracks.get(spec.model.version, TrackObservation(spec.model.version))
    canary_model = traffic.canary(mdep)
    canary_version = canary_model.version if canary_model is not None else None
    canary = observed.tracks.get(canary_version) if canary_version else None
    failures = [t for t in observed.tracks.values() if t.failure]

    conditions = [c for c in current.get("conditions") or [] if c.get("type") in _kept_conditions(mdep)]
    if stable.available:
        conditions = set_condition(conditions, READY, True, Reason.AVAILABLE,
                                   f"version {stable.version} is serving with {stable.ready_replicas} ready replica(s)",
                                   generation)
    else:
        waiting = Reason.WAITING_FOR_KSERVE if spec.runtime == Runtime.KSERVE else Reason.WAITING_FOR_PODS
        conditions = set_condition(conditions, READY, False, waiting,
                                   stable.message or f"version {stable.version} has no available replica yet",
                                   generation)
    if canary_version and canary is not None and not canary.available:
        conditions = set_condition(conditions, PROGRESSING, True, Reason.CANARY_DEPLOYING,
                                   f"canary {canary_version} is starting; it gets traffic once available", generation)
    elif canary_version and (current.get("canary") or {}).get("paused"):
        conditions = set_condition(conditions, PROGRESSING, True, Reason.CANARY_PAUSED,
                                   f"canary {canary_version} paused at {traffic.canary_percent}% of traffic",
                                   generation)
    elif canary_version and (current.get("canary") or {}).get("stalled"):
        conditions = set_condition(conditions, PROGRESSING, False, Reason.PROGRESS_DEADLINE_EXCEEDED,
                                   f"canary {canary_version} has had no verdict within progressDeadline "
                                   f"{spec.canary.progress_deadline}: too few requests at {traffic.canary_percent}% "
                                   f"of traffic; it holds there until it has one", generation)
    elif canary_version:
        conditions = set_condition(conditions, PROGRESSING, True, Reason.CANARY_ACTIVE,
                                   f"canary {canary_version} at {traffic.canary_percent}% of traffic", generation)
    elif not stable.available:
        conditions = set_condition(conditions, PROGRESSING, True, Reason.ROLLING_OUT,
                                   f"rolling out version {stable.version}", generation)
    else:
        conditions = set_condition(conditions, PROGRESSING, False, Reason.STABLE,
                                   "no rollout in progress", generation)
    ended = ending_entry(mdep, current.get("history") or [])
    if failures:
        reason = Reason.MODEL_REFUSED if any(t.refused for t in failures) else Reason.DEPLOYMENT_FAILED
        conditions = set_condition(conditions, DEGRADED, True, reason,
                                   "; ".join(f"version {t.version}: {t.failure}" for t in failures), generation)
    elif ended is not None:
        # Stays until the spec names another canary: the stable track serves meanwhile.
        reason = Reason.ROLLED_BACK if ended.outcome == Outcome.ROLLED_BACK else Reason.ABORTED
        conditions = set_condition(conditions, DEGRADED, True, reason,
                                   f"canary {ended.version} {ended.outcome.value}: {ended.reason}", generation)
    else:
        conditions = set_condition(conditions, DEGRADED, False, Reason.AS_EXPECTED, "all tracks healthy", generation)

    if failures:
        phase = Phase.DEGRADED
    elif ended is not None:
        phase = Phase.ROLLED_BACK
    elif stable.available and not canary_version:
        phase = Phase.READY
    elif stable.available or observed.tracks:
        phase = Phase.PROGRESSING
    else:
        phase = Phase.PENDING

    status: dict[str, Any] = {
        **current,
        "phase": phase.value,
        "observedGeneration": generation,
        "url": observed.url or default_url(mdep),
        "replicas": stable.ready_replicas,
        "selector": f"{LABEL_DEPLOYMENT}={mdep.metadata.name},{LABEL_VERSION}={spec.model.version}",
        "conditions": conditions,
        "stable": TrackStatus(version=spec.model.version, precision=spec.model.precision,
                              ready_replicas=stable.ready_replicas, traffic_percent=traffic.stable_percent).to_wire(),
    }
    if canary_model is not None:
        # The rollout tick's fields (step, stepStartedAt, lastAnalysis, counters) carry over while the
        # version stays; a new version starts from the model's defaults.
        previous = CanaryStatus.model_validate(current.get("canary") or {})
        kept = previous if previous.version == canary_version else CanaryStatus()
        status["canary"] = kept.model_copy(update={
            "version": canary_version, "precision": canary_model.precision,
            "ready_replicas": canary.ready_replicas if canary else 0, "traffic_percent": traffic.canary_percent,
        }).to_wire()
    else:
        status["canary"] = None
    if spec.shadow is not None:
        shadow = observed.tracks.get(spec.shadow.model.version)
        status["shadow"] = ShadowStatus.model_validate(current.get("shadow") or {}).model_copy(update={
            "version": spec.shadow.model.version, "ready_replicas": shadow.ready_replicas if shadow else 0,
            "percent": spec.shadow.percent,
        }).to_wire()
    else:
        status["shadow"] = None
    if spec.drift is None:
        status["drift"] = None      # the drift check's verdict goes with spec.drift; retraining history stays
    return status


def failed_status(mdep: ModelDeployment, current: dict[str, Any] | None, reason: str, message: str) -> dict[str, Any]:
    """Status for a spec the operator cannot run (Failed) or cannot run yet (dependency missing)."""
    current = dict(current or {})
    generation = mdep.metadata.generation
    conditions = [c for c in current.get("conditions") or [] if c.get("type") in _kept_conditions(mdep)]
    conditions = set_condition(conditions, READY, False, reason, message, generation)
    conditions = set_condition(conditions, DEGRADED, True, reason, message, generation)
    phase = {Reason.DEPENDENCY_MISSING: Phase.PENDING, Reason.APPLY_FAILED: Phase.DEGRADED}.get(reason, Phase.FAILED)
    return {**current, "phase": phase.value, "observedGeneration": generation, "conditions": conditions}


def _without_times(status: dict[str, Any]) -> dict[str, Any]:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                         for c in status.get("conditions") or []]
    return out


def status_patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning `current` into `desired`, or None when nothing meaningful changed."""
    current = current or {}
    if _without_times({k: v for k, v in current.items() if v is not None}) == \
            _without_times({k: v for k, v in desired.items() if v is not None}):
        return None
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = current.get(key)
        if old == value:
            continue
        if isinstance(old, dict) and isinstance(value, dict):
            # Only the fields that changed: a reconcile working from a body older than the rollout
            # tick's last write must not write the tick's fields (step, counters) back as they were.
            patch[key] = {k: v for k, v in value.items() if old.get(k) != v} | {k: None for k in old if k not in value}
        else:
            patch[key] = value
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch



