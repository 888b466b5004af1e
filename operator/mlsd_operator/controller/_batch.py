"""On-demand batch runs: a new value of the `mlsd.io/batch-run` annotation starts one Job.

    kubectl annotate mdep video-recs mlsd.io/batch-run=2026-11-27 --overwrite

The Job's name is derived from the value, so a repeated handler call (a retry, a restarted
operator) finds it existing instead of starting a second run. status.batch records the last run.
The scheduled runs are the CronJob child (builders/_batch.py); `kubectl create job --from=cronjob/...`
works too, as for any CronJob.
"""

from __future__ import annotations

from typing import Any

from mlsd_operator.builders import BATCH_RUN_ANNOTATION, UnsupportedSpec, build_batch_job

from . import _status as st
from ._kube import Kube
from ._reconcile import PermanentFailure, parse
from ._settings import OperatorSettings


def requested_run(body: dict[str, Any]) -> str | None:
    run = ((body.get("metadata") or {}).get("annotations") or {}).get(BATCH_RUN_ANNOTATION)
    return run.strip() or None if isinstance(run, str) else None


def start_requested_run(kube: Kube, body: dict[str, Any], settings: OperatorSettings) -> tuple[str, str] | None:
    """Starts the annotated run if status does not record it yet; (event reason, message) or None."""
    run = requested_run(body)
    status = body.get("status") or {}
    if run is None or (status.get("batch") or {}).get("lastRun") == run:
        return None
    mdep = parse(body)
    resource_version = (body.get("metadata") or {}).get("resourceVersion")
    if mdep.spec.batch is None:
        # Recorded as handled (no Job), so the refusal is said once, not on every later event.
        kube.patch_status(mdep.metadata.namespace, mdep.metadata.name,
                          {"batch": {"lastRun": run, "lastJob": None, "startedAt": None}},
                          resource_version=resource_version)
        return ("BatchRunRefused", f"{BATCH_RUN_ANNOTATION}={run}: this ModelDeployment has no spec.batch")
    try:
        job = build_batch_job(mdep, settings.render_config(), run)
    except UnsupportedSpec as error:
        raise PermanentFailure(st.Reason.INVALID_SPEC, str(error)) from None
    created = kube.create_once(job)
    name = job["metadata"]["name"]
    kube.patch_status(mdep.metadata.namespace, mdep.metadata.name,
                      {"batch": {"lastRun": run, "lastJob": name, "startedAt": st.now()}},
                      resource_version=resource_version)
    return ("BatchRunStarted", f"started Job {name} for run {run}" if created else
            f"Job {name} for run {run} already existed; recorded it")
