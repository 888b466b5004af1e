"""The operator's own Prometheus metrics."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from ._state_metrics import StatusCollector

RECONCILES = Counter("mlsd_operator_reconciles_total", "Reconciles by trigger and result", ["trigger", "result"])
RECONCILE_SECONDS = Histogram("mlsd_operator_reconcile_duration_seconds", "Time per reconcile", ["trigger"],
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CHILD_WRITES = Counter("mlsd_operator_child_writes_total", "Children applied or deleted", ["kind", "action"])
STATUS_WRITES = Counter("mlsd_operator_status_writes_total", "Status patches (only when status changed)")
ROLLOUT_DECISIONS = Counter("mlsd_operator_rollout_decisions_total", "Canary decisions by action", ["action"])
LEADER = Gauge("mlsd_operator_leader", "1 while this replica holds the leader Lease, 0 while it stands by")
STATE = StatusCollector()       # mlsd_modeldeployment_*, mlsd_canary_*, mlsd_drift_*: each object's status
REGISTRY.register(STATE)

_serving_lock = threading.Lock()
_serving_port: int | None = None


def serve_metrics(port: int) -> bool:
    """Starts the /metrics endpoint once per process (standby replicas serve it too, so Prometheus
    never sees a healthy standby as down); True if this call started it."""
    global _serving_port
    with _serving_lock:
        if not port or _serving_port is not None:
            return False
        start_http_server(port)
        _serving_port = port
        return True
