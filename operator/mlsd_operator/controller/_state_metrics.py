"""Each ModelDeployment's state as Prometheus series, for the chart's alerts and dashboard.

As kube-state-metrics does for built-in kinds: the operator keeps the last status it saw of every
ModelDeployment (from its watch, so status written by any replica counts) and turns it into gauges
at scrape time. A deleted object's series disappear with it; nothing is left stale.

    mlsd_modeldeployment_info{namespace, model_deployment, case_study, runtime, phase}      1
    mlsd_modeldeployment_condition{namespace, model_deployment, type, status, reason}       1
    mlsd_modeldeployment_track_traffic_percent{namespace, model_deployment, track, version}
    mlsd_canary_failed_analyses{namespace, model_deployment, version}
    mlsd_canary_stalled{namespace, model_deployment, version}                                 0 | 1
    mlsd_modeldeployment_drifted{namespace, model_deployment}                                 0 | 1
    mlsd_drift_psi{namespace, model_deployment, version, feature}
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

KEY = ("namespace", "model_deployment")


class StatusCollector(Collector):
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        with self._lock:
            if event_type == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = {"spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}

    def forget_all(self) -> None:
        with self._lock:
            self._objects.clear()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            objects = dict(self._objects)
        info = GaugeMetricFamily("mlsd_modeldeployment_info", "A ModelDeployment (value 1): case study, runtime, phase.",
                                 labels=[*KEY, "case_study", "runtime", "phase"])
        conditions = GaugeMetricFamily("mlsd_modeldeployment_condition", "Its status conditions (value 1).",
                                       labels=[*KEY, "type", "status", "reason"])
        traffic = GaugeMetricFamily("mlsd_modeldeployment_track_traffic_percent",
                                    "Live traffic per track (a shadow's: the mirrored percent).",
                                    labels=[*KEY, "track", "version"])
        failed = GaugeMetricFamily("mlsd_canary_failed_analyses", "Consecutive failed analyses of the live canary.",
                                   labels=[*KEY, "version"])
        stalled = GaugeMetricFamily("mlsd_canary_stalled",
                                    "1 while the canary holds past spec.canary.progressDeadline without a verdict.",
                                    labels=[*KEY, "version"])
        drifted = GaugeMetricFamily("mlsd_modeldeployment_drifted", "1 while the last drift check found drift.",
                                    labels=list(KEY))
        psi = GaugeMetricFamily("mlsd_drift_psi", "PSI of the worst features at the last drift check.",
                                labels=[*KEY, "version", "feature"])
        for (namespace, name), obj in sorted(objects.items()):
            spec, status = obj["spec"], obj["status"]
            key = [namespace, name]
            info.add_metric([*key, str(spec.get("caseStudy", "")), str(spec.get("runtime", "")),
                             str(status.get("phase") or "Unknown")], 1)
            for condition in status.get("conditions") or []:
                conditions.add_metric([*key, str(condition.get("type", "")), str(condition.get("status", "")),
                                       str(condition.get("reason", ""))], 1)
            for track in ("stable", "canary", "shadow"):
                entry = status.get(track) or {}
                if entry.get("version") is not None:
                    percent = entry.get("trafficPercent", entry.get("percent"))
                    traffic.add_metric([*key, track, str(entry["version"])], float(percent or 0))
            canary = status.get("canary") or {}
            if canary.get("version") is not None:
                failed.add_metric([*key, str(canary["version"])], float(canary.get("failedAnalyses") or 0))
                stalled.add_metric([*key, str(canary["version"])], 1.0 if canary.get("stalled") else 0.0)
            drift = status.get("drift") or {}
            if drift:
                drifted.add_metric(key, 1.0 if drift.get("drifted") else 0.0)
                for feature in drift.get("features") or []:
                    psi.add_metric([*key, str(drift.get("version", "")), str(feature.get("feature", ""))],
                                   float(feature.get("psi") or 0.0))
        yield from (info, conditions, traffic, failed, stalled, drifted, psi)
