"""Drift monitoring and retraining triggers (`spec.drift`, `spec.retraining`), one check per interval.

The stable track's predictors bin every served row with the model card's reference bin edges and
export both the live counts and the reference fractions (predictors/mlsd_predictors/servers/_drift.py),
so a check needs only Prometheus: PSI per feature over `spec.drift.window`, the `Drifted` condition
(True with the worst features / False / Unknown while there is too little traffic), an Event when it
flips, and, when drifted and `spec.retraining` is set, at most one retraining per cooldown.

Exactly once per cooldown: the retraining Job's name carries the trigger's number (count + 1), it is
created before status records it, and status is written with a resourceVersion precondition. A crash
or a conflict between the two repeats the same name, which the API server refuses as existing.
A webhook is called at least once per trigger: the payload carries an idempotency key.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from mlsd_contract.api import (
    DriftMonitoring, DriftStatus, FeatureDrift, ModelDeployment, RetrainingStatus, parse_duration,
)
from mlsd_operator.builders import build_retraining_job, retraining_job_name
from mlsd_operator.rollout import Prometheus, TrackSelector, format_time, parse_time, per_feature_bins, psi_against_reference
from mlsd_operator.rollout import _promql as q

from . import _status as st
from ._kube import Kube
from ._reconcile import parse
from ._settings import OperatorSettings

DRIFTED = st.DRIFTED
TOP_FEATURES = 10
WEBHOOK_TIMEOUT_SECONDS = 10.0
log = logging.getLogger("mlsd.operator.drift")


class Reason:
    DRIFT_DETECTED = "DriftDetected"
    NO_DRIFT = "NoDrift"
    INSUFFICIENT_DATA = "InsufficientData"
    NO_REFERENCE = "NoReference"


@dataclass(frozen=True)
class Assessment:
    drifted: bool | None                  # None: no verdict (too little traffic, or no reference)
    reason: str
    message: str
    features: list[tuple[str, float]] = field(default_factory=list)   # (feature, PSI), worst first
    samples: float = 0.0


def assess(reference: dict[str, list[float]], live: dict[str, list[float]], spec: DriftMonitoring,
           version: str) -> Assessment:
    """PSI of every monitored feature with at least `min_samples` rows in the window. Pure."""
    if not reference:
        return Assessment(None, Reason.NO_REFERENCE,
                          f"version {version} exports no mlsd_drift_reference_fraction series: is the predictor "
                          "scraped, and does its model card carry reference distributions?")
    scored, rows = [], {}
    for feature, fractions in sorted(reference.items()):
        counts = list(live.get(feature, []))[: len(fractions)]
        counts += [0.0] * (len(fractions) - len(counts))
        rows[feature] = sum(counts)
        if rows[feature] >= spec.min_samples:
            scored.append((feature, psi_against_reference(fractions, counts)))
    # Rows served: an input feature counts each row once (a score may count several per row).
    samples = max([n for f, n in rows.items() if f.startswith("input:")] or list(rows.values()))
    if not scored:
        return Assessment(None, Reason.INSUFFICIENT_DATA,
                          f"{samples:.0f} rows in the last {spec.window}; a verdict needs {spec.min_samples}",
                          samples=samples)
    scored.sort(key=lambda item: -item[1])
    over = [(f, v) for f, v in scored if v > spec.threshold]
    if over:
        worst = ", ".join(f"{f} (PSI {v:.2f})" for f, v in over[:5])
        return Assessment(True, Reason.DRIFT_DETECTED,
                          f"{len(over)} of {len(scored)} features drifted past PSI {spec.threshold} over "
                          f"{spec.window}: {worst}", scored, samples)
    return Assessment(False, Reason.NO_DRIFT,
                      f"all {len(scored)} features within PSI {spec.threshold} over {spec.window} "
                      f"(largest: {scored[0][0]} {scored[0][1]:.3f})", scored, samples)


def set_tristate_condition(conditions: list[dict[str, Any]], type_: str, status: bool | None, reason: str,
                           message: str, generation: int | None) -> list[dict[str, Any]]:
    value = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != value
    entry = {"type": type_, "status": value, "reason": reason, "message": message[:4000],
             "observedGeneration": generation,
             "lastTransitionTime": st.now() if changed else old.get("lastTransitionTime", st.now())}
    return [c for c in conditions if c.get("type") != type_] + [entry]


@dataclass
class CheckResult:
    checked: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)     # (type, reason, message)


def _due(previous: dict[str, Any], version: str, interval: float, now: dt.datetime) -> bool:
    at = parse_time(previous.get("at")) if previous.get("at") else None
    return at is None or previous.get("version") != version or (now - at).total_seconds() >= interval


def check(kube: Kube, body: dict[str, Any], settings: OperatorSettings, prometheus: Prometheus,
          now: dt.datetime | None = None) -> CheckResult:
    mdep = parse(body)
    spec = mdep.spec.drift
    result = CheckResult()
    if spec is None:
        return result
    now = now or dt.datetime.now(dt.timezone.utc)
    status = dict(body.get("status") or {})
    version = mdep.spec.model.version
    previous = status.get("drift") or {}
    if not _due(previous, version, parse_duration(spec.interval), now):
        return result
    selector = TrackSelector(mdep.metadata.namespace, mdep.metadata.name, version)
    reference = per_feature_bins(prometheus.query(q.drift_reference(selector)))
    live = per_feature_bins(prometheus.query(q.drift_observations(selector, parse_duration(spec.window))))
    verdict = assess(reference, live, spec, version)
    result.checked = True

    patch: dict[str, Any] = {"drift": DriftStatus(
        at=format_time(now), version=version, samples=round(verdict.samples, 3), drifted=verdict.drifted,
        features=[FeatureDrift(feature=f, psi=round(v, 6)) for f, v in verdict.features[:TOP_FEATURES]],
        reason=verdict.message[:1024],
    ).to_wire()}
    conditions = list(status.get("conditions") or [])
    old = next((c for c in conditions if c.get("type") == DRIFTED), {})
    patch["conditions"] = set_tristate_condition(conditions, DRIFTED, verdict.drifted, verdict.reason,
                                                 verdict.message, mdep.metadata.generation)
    if verdict.drifted and old.get("status") != "True":
        result.events.append(("Warning", Reason.DRIFT_DETECTED, verdict.message))
    elif verdict.drifted is False and old.get("status") == "True":
        result.events.append(("Normal", "DriftCleared", verdict.message))
    if verdict.drifted and mdep.spec.retraining is not None:
        retraining = _trigger_retraining(kube, mdep, settings, status.get("retraining") or {}, patch["drift"], now,
                                         result)
        if retraining is not None:
            patch["retraining"] = retraining
    kube.patch_status(mdep.metadata.namespace, mdep.metadata.name, patch,
                      resource_version=(body.get("metadata") or {}).get("resourceVersion"))
    return result


def _trigger_retraining(kube: Kube, mdep: ModelDeployment, settings: OperatorSettings, previous: dict[str, Any],
                        drift: dict[str, Any], now: dt.datetime, result: CheckResult) -> dict[str, Any] | None:
    retraining = mdep.spec.retraining
    assert retraining is not None
    last = parse_time(previous["lastTriggeredAt"]) if previous.get("lastTriggeredAt") else None
    cooldown = parse_duration(retraining.cooldown)
    if last is not None and (now - last).total_seconds() < cooldown:
        return None          # held: the last trigger is within the cooldown
    number = int(previous.get("count", 0)) + 1
    features = ", ".join(f["feature"] for f in drift["features"] if f["psi"] > mdep.spec.drift.threshold)
    if retraining.job is not None:
        job = build_retraining_job(mdep, settings.render_config(), number, drift)
        created = kube.create_once(job)
        name = retraining_job_name(mdep, number)
        message = f"started Job {name} (retraining #{number}) for drifted {features}"
        if not created:
            message = f"Job {name} (retraining #{number}) already existed; recorded it"
    else:
        name = None
        error = _call_webhook(retraining.webhook.url, mdep, number, drift)
        if error is not None:
            result.events.append(("Warning", "RetrainingWebhookFailed", error))
            return None      # not triggered: the next check retries
        message = f"called the retraining webhook (retraining #{number}) for drifted {features}"
    result.events.append(("Normal", "RetrainingStarted", message))
    return RetrainingStatus(count=number, last_triggered_at=format_time(now), last_reason=message[:1024],
                            last_job=name or None).to_wire()


def _call_webhook(url: str, mdep: ModelDeployment, number: int, drift: dict[str, Any]) -> str | None:
    """POSTs the drift as JSON; the error message, or None on a 2xx."""
    payload = {
        "modelDeployment": mdep.metadata.name, "namespace": mdep.metadata.namespace,
        "caseStudy": mdep.spec.case_study.value, "version": mdep.spec.model.version,
        "storageUri": mdep.spec.model.storage_uri, "retraining": number, "drift": drift,
        "idempotencyKey": f"{mdep.metadata.uid}/{number}",
    }
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Idempotency-Key": payload["idempotencyKey"]})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as reply:
            if 200 <= reply.status < 300:
                return None
            return f"retraining webhook answered {reply.status}"
    except urllib.error.HTTPError as error:
        return f"retraining webhook answered {error.code} {error.reason}"
    except (OSError, ValueError) as error:
        return f"retraining webhook unreachable: {error}"
