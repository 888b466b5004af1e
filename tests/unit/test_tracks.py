"""The track model (mlsd_contract.tracks): which tracks exist and how traffic splits, from spec and
status alone. Builders, status, rollout and `mlsd serve` all read it, so its rules are pinned here."""

from __future__ import annotations

from typing import Any

from mlsd_contract.api import ModelDeployment
from mlsd_contract.tracks import CANARY, SHADOW, STABLE, TrafficState, ending_entry, promoted
from tests.conftest import canary, manifest

SHADOW_SPEC = {"model": {"version": "3", "storageUri": "pvc://models/ad-click-prediction/3"}, "percent": 20}


def mdep(status: dict[str, Any] | None = None, **spec: Any) -> ModelDeployment:
    body = manifest(**spec)
    if status is not None:
        body["status"] = status
    return ModelDeployment.model_validate(body)


def history(*entries: tuple[str, str]) -> list[dict[str, str]]:
    return [{"version": version, "outcome": outcome, "at": "2026-01-01T00:00:00Z"} for version, outcome in entries]


def test_stable_alone_takes_all_traffic() -> None:
    traffic = TrafficState.from_status(mdep())
    assert traffic.canary_percent is None
    assert [(t.name, t.version, t.percent) for t in traffic.tracks(mdep())] == [(STABLE, "1", 100)]


def test_a_new_canary_starts_dark_then_follows_status() -> None:
    assert TrafficState.from_status(mdep(canary=canary())).canary_percent == 0
    moved = mdep({"canary": {"version": "2", "trafficPercent": 10}}, canary=canary())
    traffic = TrafficState.from_status(moved)
    assert [(t.name, t.percent) for t in traffic.tracks(moved)] == [(STABLE, 90), (CANARY, 10)]
    assert traffic.canary(moved).version == "2"


def test_status_of_another_canary_version_does_not_carry_over() -> None:
    other = mdep({"canary": {"version": "9", "trafficPercent": 50}}, canary=canary())
    assert TrafficState.from_status(other).canary_percent == 0


def test_a_rolled_back_or_aborted_canary_stays_gone_until_the_spec_names_another() -> None:
    for outcome in ("RolledBack", "Aborted"):
        ended = mdep({"canary": {"version": "2", "trafficPercent": 0}, "history": history(("2", outcome))},
                     canary=canary())
        traffic = TrafficState.from_status(ended)
        assert traffic.canary_percent is None and traffic.canary(ended) is None
        assert traffic.versions(ended) == ["1"]
        assert ending_entry(ended).outcome.value == outcome
        renamed = mdep({"history": history(("2", outcome))}, canary=canary("4"))
        assert TrafficState.from_status(renamed).canary_percent == 0 and ending_entry(renamed) is None


def test_a_promotion_does_not_end_the_canary_and_is_found_in_wire_history() -> None:
    entries = history(("2", "Promoted"))
    live = mdep({"canary": {"version": "2", "trafficPercent": 100}, "history": entries}, canary=canary())
    assert TrafficState.from_status(live).canary_percent == 100
    assert promoted("2", entries) and not promoted("3", entries)


def test_newest_ending_entry_wins_and_wire_history_is_read_like_typed() -> None:
    entries = history(("2", "Aborted"), ("2", "RolledBack"))
    spec = mdep(canary=canary())
    assert ending_entry(spec, entries).outcome.value == "RolledBack"
    assert ending_entry(mdep({"history": entries}, canary=canary())).outcome.value == "RolledBack"


def test_the_shadow_is_mirrored_and_listed_last() -> None:
    both = mdep({"canary": {"version": "2", "trafficPercent": 25}}, canary=canary(), shadow=SHADOW_SPEC,
                runtime="triton")
    tracks = TrafficState.from_status(both).tracks(both)
    assert [(t.name, t.version, t.percent, t.mirrored) for t in tracks] == [
        (STABLE, "1", 75, False), (CANARY, "2", 25, False), (SHADOW, "3", 20, True)]


def test_a_split_without_a_canary_in_the_spec_has_no_canary_track() -> None:
    plain = mdep()
    traffic = TrafficState(30)        # e.g. `mlsd render --canary-percent 30` on a spec without one
    assert traffic.canary(plain) is None
    assert [t.name for t in traffic.tracks(plain)] == [STABLE]
