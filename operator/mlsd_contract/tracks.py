"""The tracks of a ModelDeployment and how traffic is split between them: pure, read from the
spec and status, never from a clock. The builders render children per track, the controller maps
children back to tracks and writes status, the rollout moves the split, and `mlsd serve` routes
local traffic: all of them ask this module.

- stable: `spec.model`, always; it takes what the canary does not.
- canary: `spec.canary.model` while it is *live*: named in the spec and not ended. A live canary
  starts dark (0%) and the rollout moves it along `spec.canary.steps`.
- ended: a history entry rolled the spec's canary back or aborted it; it stays gone (the stable
  track serves) until the spec names another version.
- shadow: `spec.shadow.model`, mirrored `spec.shadow.percent` of requests, answers discarded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .api import HistoryEntry, ModelDeployment, ModelRef, Outcome

ENDING_OUTCOMES = frozenset({Outcome.ROLLED_BACK, Outcome.ABORTED})
"""Outcomes after which a canary version gets no traffic again."""


STABLE, CANARY, SHADOW = "stable", "canary", "shadow"
"""Track names, as the `mlsd.io/track` label and the predictors' `track` series label spell them."""


@dataclass(frozen=True)
class Track:
    name: str
    """STABLE, CANARY or SHADOW."""
    model: ModelRef
    percent: int
    """Share of live traffic for stable and canary; share of requests mirrored for the shadow."""

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def mirrored(self) -> bool:
        return self.name == SHADOW


def _entry(entry: HistoryEntry | Mapping[str, Any]) -> HistoryEntry:
    return entry if isinstance(entry, HistoryEntry) else HistoryEntry.model_validate(entry)


def ending_entry(mdep: ModelDeployment,
                 history: Iterable[HistoryEntry | Mapping[str, Any]] | None = None) -> HistoryEntry | None:
    """The newest history entry that ended the spec's canary, if any. `history` defaults to the
    status the object was read with; the controller passes the status it is about to write over."""
    if mdep.spec.canary is None:
        return None
    if history is None:
        history = (mdep.status.history if mdep.status else None) or []
    version = mdep.spec.canary.model.version
    for entry in reversed([_entry(e) for e in history]):
        if entry.version == version and entry.outcome in ENDING_OUTCOMES:
            return entry
    return None


def promoted(version: str, history: Iterable[HistoryEntry | Mapping[str, Any]]) -> bool:
    """Whether `version` was promoted (history keeps the last entries only)."""
    return any(e.version == version and e.outcome == Outcome.PROMOTED for e in map(_entry, history))


@dataclass(frozen=True)
class TrafficState:
    """`canary_percent` is None when no canary track should exist (none asked for, or it ended)."""

    canary_percent: int | None = None

    @classmethod
    def from_status(cls, mdep: ModelDeployment) -> TrafficState:
        canary = mdep.spec.canary
        if canary is None or ending_entry(mdep) is not None:
            return cls(None)
        status = mdep.status
        if status and status.canary and status.canary.version == canary.model.version:
            return cls(status.canary.traffic_percent)
        return cls(0)                # a new canary starts dark; the operator moves it to the first step

    def canary(self, mdep: ModelDeployment) -> ModelRef | None:
        """The canary's model while it is live: the spec names one and this split has a place for it."""
        if mdep.spec.canary is None or self.canary_percent is None:
            return None
        return mdep.spec.canary.model

    @property
    def stable_percent(self) -> int:
        return 100 - (self.canary_percent or 0)

    def tracks(self, mdep: ModelDeployment) -> list[Track]:
        """Tracks that exist now, stable first, then the canary, then the shadow."""
        found = [Track(STABLE, mdep.spec.model, self.stable_percent)]
        canary = self.canary(mdep)
        if canary is not None:
            found.append(Track(CANARY, canary, self.canary_percent or 0))
        if mdep.spec.shadow is not None:
            found.append(Track(SHADOW, mdep.spec.shadow.model, mdep.spec.shadow.percent))
        return found

    def versions(self, mdep: ModelDeployment) -> list[str]:
        """Versions served now, stable first: how children map back to tracks."""
        return [track.version for track in self.tracks(mdep)]
