"""The rollout state machine: where the canary goes next. Pure; every branch is unit-tested.

State lives in `status.canary` (step, trafficPercent, stepStartedAt, failedAnalyses, paused), so a
restarted operator resumes at the same step with the same counters."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mlsd_contract.api import Canary, DeadlineAction, parse_duration

from ._analysis import Decision, Verdict

CONTROL_ANNOTATION = "mlsd.io/rollout"      # paused | promote | abort (resume: remove it)


class Control(str, Enum):
    PAUSED = "paused"
    PROMOTE = "promote"
    ABORT = "abort"


class Action(str, Enum):
    HOLD = "Hold"              # nothing to do yet (interval not over, or canary not started)
    WAIT = "Wait"              # analysis ran but saw too little traffic
    RETRY = "Retry"            # analysis failed, below failureLimit: analyse the same step again
    ADVANCE = "Advance"
    PROMOTE = "Promote"
    ROLLBACK = "Rollback"
    ABORT = "Abort"
    PAUSE = "Pause"
    RESUME = "Resume"
    STALL = "Stalled"          # no verdict within progressDeadline: hold the step's traffic, say so


@dataclass(frozen=True)
class Step:
    action: Action
    reason: str
    canary: dict[str, Any] = field(default_factory=dict)    # fields of status.canary to set

    @property
    def ends_rollout(self) -> bool:
        return self.action in (Action.PROMOTE, Action.ROLLBACK, Action.ABORT)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_control(value: str | None) -> Control | None:
    try:
        return Control(value) if value else None
    except ValueError:
        return None


def analysis_due(canary: Canary, status: dict[str, Any], now: dt.datetime) -> bool:
    started = parse_time(status.get("stepStartedAt"))
    return started is not None and not status.get("paused") and \
        (now - started).total_seconds() >= parse_duration(canary.interval)


def decide(canary: Canary, status: dict[str, Any], now: dt.datetime, control: Control | None,
           verdict: Verdict | None) -> Step:
    """The next step, given the canary spec, its status, the clock, a manual control and a verdict
    (the verdict is only needed when `analysis_due` says so)."""
    stamp = format_time(now)
    step = int(status.get("step", 0))
    if control == Control.ABORT:
        return Step(Action.ABORT, "aborted by the mlsd.io/rollout annotation", {"trafficPercent": 0})
    if control == Control.PROMOTE:
        return Step(Action.PROMOTE, "promoted by the mlsd.io/rollout annotation", {"trafficPercent": 100})
    if not status.get("stepStartedAt"):
        return Step(Action.HOLD, "canary not started yet")
    if control == Control.PAUSED:
        if status.get("paused"):
            return Step(Action.HOLD, "paused")
        return Step(Action.PAUSE, f"paused at step {step + 1} by the mlsd.io/rollout annotation", {"paused": True})
    if status.get("paused"):
        # A fresh window after a pause: traffic seen while paused is not this step's evidence.
        return Step(Action.RESUME, f"resumed at step {step + 1}",
                    {"paused": False, "stepStartedAt": stamp} | ({"stalled": None} if status.get("stalled") else {}))
    if not analysis_due(canary, status, now):
        return Step(Action.HOLD, "interval not over")
    if verdict is None:
        raise ValueError("an analysis is due: pass its verdict")
    analysis = verdict.to_status(stamp)
    if verdict.decision == Decision.WAIT:
        return _waited(canary, status, now, verdict, analysis)
    settled = {"stalled": None} if status.get("stalled") else {}       # evidence came: no longer stalled
    if verdict.decision == Decision.FAIL:
        failed = int(status.get("failedAnalyses", 0)) + 1
        fields = {"lastAnalysis": analysis, "failedAnalyses": failed, **settled}
        if failed >= canary.analysis.failure_limit:
            return Step(Action.ROLLBACK, f"{verdict.failed_metric}: {verdict.reason} "
                                         f"({failed} failed analyses, limit {canary.analysis.failure_limit})",
                        fields | {"trafficPercent": 0})
        return Step(Action.RETRY, f"{verdict.reason} ({failed} of {canary.analysis.failure_limit} allowed failures)",
                    fields | {"stepStartedAt": stamp})
    if step + 1 >= len(canary.steps):
        return Step(Action.PROMOTE, f"all {len(canary.steps)} steps passed; last: {verdict.reason}",
                    {"lastAnalysis": analysis, "trafficPercent": 100, **settled})
    nxt = step + 1
    return Step(Action.ADVANCE, f"step {step + 1} passed ({verdict.reason}); now {canary.steps[nxt]}%",
                {"lastAnalysis": analysis, "step": nxt, "trafficPercent": canary.steps[nxt], "stepStartedAt": stamp,
                 **settled})


def _waited(canary: Canary, status: dict[str, Any], now: dt.datetime, verdict: Verdict,
            analysis: dict[str, Any]) -> Step:
    """Too little evidence for a verdict: wait, until the step has gone `progressDeadline` without
    one; then hold and say so once (Progressing=False), or roll back, as the spec says. A canary
    that cannot be judged is never promoted."""
    started = parse_time(status.get("stepStartedAt"))
    overdue = started is not None and (now - started).total_seconds() >= parse_duration(canary.progress_deadline)
    if not overdue:
        return Step(Action.WAIT, verdict.reason, {"lastAnalysis": analysis})
    step = int(status.get("step", 0))
    late = (f"no verdict at step {step + 1} within progressDeadline {canary.progress_deadline} "
            f"({verdict.reason})")
    if canary.on_progress_deadline == DeadlineAction.ROLLBACK:
        return Step(Action.ROLLBACK, f"{late}; onProgressDeadline: rollback",
                    {"lastAnalysis": analysis, "trafficPercent": 0})
    if status.get("stalled"):
        return Step(Action.WAIT, verdict.reason, {"lastAnalysis": analysis})
    return Step(Action.STALL, f"{late}; holding at {status.get('trafficPercent', 0)}% until it has one "
                              "(onProgressDeadline: hold)", {"lastAnalysis": analysis, "stalled": True})
