"""One reconcile pass: build -> check ownership -> apply -> prune -> observe -> status.

Pure decisions live in the builders and `_status`; this module only sequences the API calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from mlsd_contract.api import ModelDeployment, Runtime
from mlsd_contract.tracks import TrafficState
from mlsd_operator.builders import (RUNTIMES, UnsupportedSpec, build_children, canary_predictor_name,
                                   kserve_deployments, required_apis, version_name)
from mlsd_operator.builders._common import pod_selector
from mlsd_operator.builders._config import RenderConfig
from mlsd_operator.builders._triton import build_route
from mlsd_operator.builders._kserve import KSERVE_API


from . import _status as st
from ._kube import Kube, MissingApi, ObjectKey, OwnershipConflict
from ._metrics import CHILD_WRITES, STATUS_WRITES
from ._settings import OperatorSettings


class PermanentFailure(Exception):
    """The spec cannot be run as written; retrying without a spec change is pointless."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class WaitingForDependency(Exception):
    def __init__(self, message: str):
        super().__init__(message)


@dataclass
class ReconcileResult:
    changes: list[tuple[str, ObjectKey]]      # ("created" | "updated" | "deleted", object)
    status: dict[str, Any]
    status_written: bool


def parse(body: dict[str, Any]) -> ModelDeployment:
    try:
        return ModelDeployment.model_validate({k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec", "status")
                                               if body.get(k) is not None})
    except ValidationError as error:
        raise PermanentFailure(st.Reason.INVALID_SPEC, f"spec does not validate: {error}") from None


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def _observe_kserve(kube: Kube, mdep: ModelDeployment, versions: list[str], *,
                    read_pods: bool = True) -> st.Observation:
    """KServe reports every track on one InferenceService (stable first in `versions`)."""
    namespace = mdep.metadata.namespace
    isvc = kube.get(KSERVE_API, "InferenceService", namespace, mdep.metadata.name)
    deployments = {v: kube.get("apps/v1", "Deployment", namespace, name)
                   for v, name in kserve_deployments(mdep, versions).items()} if isvc is not None else {}
    names = {v: canary_predictor_name(mdep, v) for v in versions[1:]} if deployments else None
    tracks = st.observe_inference_service(versions, isvc, canary_names=names, deployments=deployments)
    if read_pods and not all(t.available for t in tracks.values()):
        pods = kube.pods(mdep.metadata.namespace, _selector(RUNTIMES[Runtime.KSERVE].pod_labels(mdep)))
        tracks = {v: st.with_refusal(t, pods) for v, t in tracks.items()}
    return st.Observation(tracks, ((isvc or {}).get("status") or {}).get("url"))


def _observe_deployments(kube: Kube, mdep: ModelDeployment, versions: list[str], *,
                         read_pods: bool = True) -> st.Observation:
    """One Deployment per track (Triton)."""
    tracks = {}
    for version in versions:
        track = st.observe_deployment(version, kube.get("apps/v1", "Deployment", mdep.metadata.namespace,
                                                        version_name(mdep, version)))
        if read_pods and track.exists and not track.available:
            track = st.with_refusal(track, kube.pods(mdep.metadata.namespace, _selector(pod_selector(mdep, version))))
        tracks[version] = track
    return st.Observation(tracks)


class _Observer(Protocol):
    def __call__(self, kube: Kube, mdep: ModelDeployment, versions: list[str], *,
                 read_pods: bool = True) -> st.Observation: ...


OBSERVERS: dict[Runtime, _Observer] = {Runtime.KSERVE: _observe_kserve, Runtime.TRITON: _observe_deployments}
"""How each runtime's workloads report its tracks (the builders' side is builders.RUNTIMES)."""


def _observe(kube: Kube, mdep: ModelDeployment, traffic: TrafficState) -> st.Observation:
    """Tracks as their workloads report them; pods are read only for a track that is not available,
    to tell a model its predictor refused (a Degraded condition naming why) from pods still starting."""
    return OBSERVERS[mdep.spec.runtime](kube, mdep, traffic.versions(mdep))


def canary_available(kube: Kube, mdep: ModelDeployment) -> bool:
    """Whether the canary has an available replica right now: what reports the live tracks (their
    Deployments, or the InferenceService), no pods. For checks right before a write that would give
    the canary more traffic."""
    version = mdep.spec.canary.model.version
    live = [t.version for t in TrafficState.from_status(mdep).tracks(mdep) if not t.mirrored]   # stable first
    track = OBSERVERS[mdep.spec.runtime](kube, mdep, live, read_pods=False).tracks.get(version)
    return bool(track and track.available)


def _routed_canary_percent(route: dict[str, Any] | None, backend: str) -> int:
    for rule in ((route or {}).get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            if ref.get("name") == backend:
                return int(ref.get("weight", 1))
    return 0


def _route_within_availability(kube: Kube, mdep: ModelDeployment, config: RenderConfig, traffic: TrafficState,
                               route: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """The route as built, unless it would raise the canary's weight while the canary has no available
    replica: then the weight it has now is kept. Status may say more (a step decided while the canary
    was available, whose route write came after its pods went); traffic follows once they are back.
    Checked right before the route is written, after every other child."""
    if not traffic.canary_percent or mdep.spec.canary is None:
        return route
    if canary_available(kube, mdep):
        return route
    applied = _routed_canary_percent(existing, version_name(mdep, mdep.spec.canary.model.version))
    if applied >= traffic.canary_percent:
        return route
    return build_route(mdep, config, TrafficState(applied))


def _start_canary(mdep: ModelDeployment, traffic: TrafficState, observed: st.Observation,
                  current: dict[str, Any]) -> TrafficState:
    """A dark canary gets its first step once it is available; a started one follows edited steps."""
    canary = mdep.spec.canary
    if canary is None or traffic.canary_percent is None:
        return traffic
    track = observed.tracks.get(canary.model.version)
    previous = current.get("canary") or {}
    started = previous.get("version") == canary.model.version and previous.get("stepStartedAt")
    if not started:
        return TrafficState(canary.steps[0]) if track and track.available else traffic
    step = min(int(previous.get("step", 0)), len(canary.steps) - 1)
    return TrafficState(canary.steps[step])


def reconcile(kube: Kube, body: dict[str, Any], settings: OperatorSettings, *, apply: bool = True) -> ReconcileResult:
    mdep = parse(body)
    current = dict(body.get("status") or {})
    uid = mdep.metadata.uid
    traffic = TrafficState.from_status(mdep)
    config = settings.render_config()
    changes: list[tuple[str, ObjectKey]] = []

    def converge(traffic: TrafficState) -> None:
        try:
            desired = build_children(mdep, config, traffic)
        except UnsupportedSpec as error:
            raise PermanentFailure(st.Reason.INVALID_SPEC, str(error)) from None
        for child in desired:
            for api_version, kind in required_apis(child):
                if not kube.served(api_version, kind):
                    raise WaitingForDependency(str(MissingApi(api_version, kind)))
        for child in desired:          # the HTTPRoute, which carries the split, comes last
            hold = None
            if child["kind"] == "HTTPRoute":      # availability checked between the route's read and its write
                def hold(route, existing, traffic=traffic):
                    return _route_within_availability(kube, mdep, config, traffic, route, existing)
            try:
                action = kube.apply(child, uid, just_before=hold)
            except OwnershipConflict as error:
                raise PermanentFailure(st.Reason.OWNERSHIP_CONFLICT, str(error)) from None
            CHILD_WRITES.labels(child["kind"], action).inc()
            if action != "unchanged":
                changes.append((action, ObjectKey.of(child)))
        wanted = {ObjectKey.of(c) for c in desired}
        for existing in kube.owned(mdep.metadata.namespace, mdep.metadata.name, uid):
            key = ObjectKey.of(existing)
            if key not in wanted:
                kube.delete(existing)
                changes.append(("deleted", key))
                CHILD_WRITES.labels(existing["kind"], "delete").inc()

    if apply:
        converge(traffic)
    observed = _observe(kube, mdep, traffic)
    started = _start_canary(mdep, traffic, observed, current)
    if started != traffic:
        converge(started)
        observed = _observe(kube, mdep, started)
    desired_status = st.desired_status(mdep, observed, started, current)
    if started != traffic and desired_status.get("canary"):
        desired_status["canary"]["stepStartedAt"] = st.now()
    patch = st.status_patch(current, desired_status)
    if patch:
        kube.patch_status(mdep.metadata.namespace, mdep.metadata.name, patch)
        STATUS_WRITES.inc()
    return ReconcileResult(changes, desired_status, bool(patch))


def record_failure(kube: Kube, body: dict[str, Any], reason: str, message: str) -> bool:
    """Writes a Failed/Pending status for a spec that cannot run (now or at all); True if it changed."""
    meta = body["metadata"]
    try:
        mdep = parse(body)
    except PermanentFailure:
        mdep = None
    current = dict(body.get("status") or {})
    if mdep is None:
        desired = {**current, "phase": "Failed", "observedGeneration": meta.get("generation"),
                   "conditions": st.set_condition([], st.READY, False, reason, message, meta.get("generation"))}
    else:
        desired = st.failed_status(mdep, current, reason, message)
    patch = st.status_patch(current, desired)
    if patch:
        kube.patch_status(meta["namespace"], meta["name"], patch)
        STATUS_WRITES.inc()
    return bool(patch)
