"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter("mlsd_operator_reconciles_total", "Reconciles by trigger and result", ["trigger", "result"])
RECONCILE_SECONDS = Histogram("mlsd_operator_reconcile_duration_seconds", "Time per reconcile", ["trigger"],
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CHILD_WRITES = Counter("mlsd_operator_child_writes_total", "Children applied or deleted", ["kind", "action"])
STATUS_WRITES = Counter("mlsd_operator_status_writes_total", "Status patches (only when status changed)")
ROLLOUT_DECISIONS = Counter("mlsd_operator_rollout_decisions_total", "Canary decisions by action", ["action"])
