"""Which tracks exist right now and how traffic is split: read from status, never from a clock."""

from __future__ import annotations

from dataclasses import dataclass

from mlsd_contract.api import ModelDeployment, Outcome


@dataclass(frozen=True)
class TrafficState:
    """`canary_percent` is None when no canary track should exist (none asked for, or it ended)."""

    canary_percent: int | None = None

    @classmethod
    def from_status(cls, mdep: ModelDeployment) -> "TrafficState":
        canary = mdep.spec.canary
        if canary is None:
            return cls(None)
        status = mdep.status
        for entry in (status.history or []) if status else []:
            if entry.version == canary.model.version and entry.outcome in (Outcome.ROLLED_BACK, Outcome.ABORTED):
                return cls(None)     # ended for this version: stays gone until the spec names another
        if status and status.canary and status.canary.version == canary.model.version:
            return cls(status.canary.traffic_percent)
        return cls(0)                # a new canary starts dark; the operator moves it to the first step
